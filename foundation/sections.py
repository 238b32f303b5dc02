"""The settings' declarations: one frozen dataclass per section, each field declared once with
:func:`setting` (default, one-line description, constraints); its type is the annotation.

:mod:`foundation.settings` derives everything else from these (loading, environment names,
redaction, ``docs/configuration.md``). Add a setting here, then run
``crashfleet config docs > docs/configuration.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AgentSettings",
    "AnalyzerSettings",
    "KafkaSettings",
    "LogSettings",
    "S3Settings",
    "Settings",
    "StoreSettings",
    "SymbolsSettings",
    "WebSettings",
    "setting",
]


def setting(default: Any, doc: str, *, secret: bool = False, minimum: float | None = None) -> Any:
    """Declare one setting: its default, a one-line description and constraints."""
    meta = {"doc": doc, "secret": secret, "minimum": minimum}
    if isinstance(default, list):
        raise TypeError("use a tuple for list defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class LogSettings:
    """How crashfleet logs (structlog)."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", "Lowest level logged.")
    format: Literal["auto", "json", "console"] = setting(
        "auto", "Log format: JSON lines, readable console lines, or auto (console on a terminal)."
    )


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka cluster events travel through."""

    bootstrap_servers: tuple[str, ...] = setting(
        ("127.0.0.1:9092",), "Kafka bootstrap servers as host:port."
    )
    client_id: str = setting("crashfleet", "Client id sent to the brokers.")
    request_timeout_s: float = setting(
        10.0, "Seconds to wait for a broker before reporting it unreachable.", minimum=0.1
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = setting(
        "PLAINTEXT", "Kafka security protocol."
    )
    sasl_mechanism: str = setting("", "SASL mechanism (PLAIN, SCRAM-SHA-512, …); empty for none.")
    sasl_username: str = setting("", "SASL user name.")
    sasl_password: str = setting("", "SASL password.", secret=True)
    # Transport security (issue 18): TLS and SASL client settings; a password from a file.
    ssl_cafile: str = setting("", "PEM file of CAs trusted for the brokers' certificates "
                              "(SSL, SASL_SSL); empty: the system's.")
    ssl_certfile: str = setting("", "Client certificate (PEM) for mutual TLS; empty for none.")
    ssl_keyfile: str = setting("", "Client private key (PEM) for mutual TLS.")
    ssl_check_hostname: bool = setting(True, "Check that a broker's certificate names it.")
    sasl_password_file: str = setting(
        "", "File holding the SASL password (mode 0600 or 0400, owned by this user or root); "
        "instead of sasl_password.")
    topic_crash_reported: str = setting("crash-reported", "Topic of crash-reported events.")
    topic_crash_analyzed: str = setting("crash-analyzed", "Topic of crash-analyzed events.")
    topic_dead_letter: str = setting(
        "crash-dead-letter", "Topic of events whose dumps could not be analyzed."
    )
    topic_reanalyze: str = setting(
        "crash-reanalyze", "Topic of re-analysis requests (crashfleet reanalyze); consumed by "
        "'crashfleet analyzer --reanalysis' so normal traffic never waits behind it.")


@dataclass(frozen=True)
class S3Settings:
    """The S3-compatible object store holding dumps, reports and symbol packs.

    Credentials never live here: boto3's standard chain (environment, profile, instance role).
    """

    endpoint_url: str = setting("", "S3 endpoint URL; empty for AWS's default endpoint.")
    region: str = setting("us-east-1", "S3 region.")
    bucket: str = setting("crashfleet", "Bucket for dumps, reports and symbol packs.")
    addressing_style: Literal["auto", "path", "virtual"] = setting(
        "auto", "Bucket addressing style (path for most self-hosted servers)."
    )
    connect_timeout_s: float = setting(
        5.0, "Seconds to wait for a connection before reporting the endpoint unreachable.",
        minimum=0.1,
    )
    read_timeout_s: float = setting(60.0, "Seconds to wait for a response.", minimum=0.1)
    max_attempts: int = setting(3, "Attempts per request, retries included.", minimum=1)
    sse: Literal["none", "AES256", "aws:kms"] = setting(
        "none", "Server-side encryption for objects written."
    )
    sse_kms_key_id: str = setting("", "KMS key id when sse is aws:kms.")
    # Transport security (issue 18).
    ca_bundle: str = setting(
        "", "PEM file of CAs trusted for the S3 endpoint's TLS certificate (a private CA); "
        "empty: the system's. Certificates are always verified.")


@dataclass(frozen=True)
class StoreSettings:
    """The crash store (SQLAlchemy URL)."""

    url: str = setting(
        "sqlite:////var/lib/crashfleet/crashfleet.db",
        "SQLAlchemy database URL: sqlite:///PATH or postgresql+psycopg://USER:PASS@HOST/DB.",
        secret=True,
    )
    # Transport security (issue 18): PostgreSQL over TLS; the password from a file.
    sslmode: Literal["", "disable", "prefer", "require", "verify-ca", "verify-full"] = setting(
        "", "PostgreSQL sslmode (verify-full: TLS with the server's certificate and name "
        "checked against sslrootcert); empty: the URL's own or libpq's default.")
    sslrootcert: str = setting("", "PEM file of CAs trusted for the PostgreSQL server.")
    password_file: str = setting(
        "", "File holding the PostgreSQL password (mode 0600 or 0400, owned by this user or "
        "root), so the URL carries none.")
    # Retention (issue 17): old crashes go, their clusters' totals stay.
    retain_days: float = setting(
        0.0, "Crashes stored more than this many days ago are pruned (crashfleet store prune, "
        "and the analyzer every prune_interval_s); their clusters keep their counts, first "
        "and last seen and per-day counts. 0: crashes are kept forever.", minimum=0.0)
    prune_objects: bool = setting(
        False, "Pruning also deletes the pruned crashes' dumps (with their index and kernel "
        "log) and reports from the object store.")
    prune_batch: int = setting(
        500, "Crashes pruned per transaction (a large prune is many short ones).", minimum=1)
    prune_interval_s: float = setting(
        3600.0, "How often each analyzer prunes while retain_days is set; 0: only by hand "
        "(crashfleet store prune).", minimum=0.0)


@dataclass(frozen=True)
class AgentSettings:
    """The host agent: where dumps are found and how they are shipped."""

    watch_dirs: tuple[str, ...] = setting(
        ("/var/crash",), "Directories watched for finished dumps (kdump-tools, RHEL, plain)."
    )
    state_dir: str = setting(
        "/var/lib/crashfleet/agent", "Directory of the agent's journal (uploads, outbox)."
    )
    content: Literal["full", "log-only"] = setting(
        "full", "Ship the whole dump, or only the kernel log and header facts (log-only)."
    )
    dumps_prefix: str = setting("dumps/", "Object key prefix for shipped dumps.")
    part_size_mib: int = setting(
        16, "Multipart part size in MiB (raised for dumps over 9,000 parts: S3 allows 10,000).",
        minimum=5,
    )
    upload_concurrency: int = setting(
        4, "Parts uploaded in parallel (streamed from the file: memory does not grow with it).",
        minimum=1,
    )
    bandwidth_limit_mibps: float = setting(
        0.0, "Upload bandwidth cap in MiB/s; 0 for none.", minimum=0.0
    )
    stable_for_s: float = setting(
        5.0, "Seconds a dump's size must stay unchanged before it is shipped.", minimum=0.0
    )
    rescan_interval_s: float = setting(
        60.0, "Seconds between full rescans (inotify reports most changes sooner).", minimum=1.0
    )
    retry_initial_s: float = setting(1.0, "First retry delay after a failure.", minimum=0.01)
    retry_max_s: float = setting(300.0, "Longest retry delay (exponential backoff, jitter).",
                                 minimum=0.01)
    retention: Literal["keep", "delete", "limit"] = setting(
        "keep", "After a confirmed shipment: keep dumps, delete them, or apply the limits below."
    )
    retention_keep_newest: int = setting(
        0, "With retention = limit: keep at most this many shipped dumps (0: no count limit).",
        minimum=0,
    )
    retention_max_bytes: int = setting(
        0, "With retention = limit: keep shipped dumps up to this many bytes (0: no limit).",
        minimum=0,
    )
    require_root_owner: bool = setting(
        True, "Refuse crash directories not owned by root (as apport does)."
    )
    # Hostile hosts (issue 18): who must own dumps and every directory on the way to them.
    dump_owner_uid: int = setting(
        0, "With require_root_owner: the uid that must own the watched directories, the "
        "directories below them and the dump files (0 = root).", minimum=0
    )
    metrics_port: int = setting(0, "Port of the agent's /metrics endpoint; 0 for none.",
                                minimum=0)
    # Least privilege (issue 18): /metrics answers on loopback unless told otherwise.
    metrics_addr: str = setting(
        "127.0.0.1", "Address the agent's /metrics endpoint binds to (0.0.0.0: every interface)."
    )
    metrics_textfile: str = setting(
        "", "node_exporter textfile to write metrics to (a *.prom path); empty for none."
    )


@dataclass(frozen=True)
class SymbolsSettings:
    """The symbol cache: kernel debug symbols by build-id, digested into shared packs."""

    cache_dir: str = setting(
        "/var/cache/crashfleet/symbols", "Directory of the local pack tier and downloads."
    )
    disk_cap_mib: int = setting(
        4096, "Most MiB of packs kept in cache_dir (least recently used evicted).", minimum=1
    )
    memory_packs: int = setting(8, "Packs kept decoded in each process.", minimum=1)
    shared: Literal["none", "s3"] = setting(
        "none", "Shared pack tier: none, or the [s3] bucket (packs/<build-id>)."
    )
    sources: tuple[str, ...] = setting(
        ("debuginfod", "dir", "deb"),
        "Sources tried in order when no tier has a pack: debuginfod, dir, deb.",
    )
    debuginfod_urls: tuple[str, ...] = setting(
        (), "debuginfod server URLs; empty: the DEBUGINFOD_URLS environment variable."
    )
    debuginfod_timeout_s: float = setting(
        30.0, "Seconds to wait for a debuginfod server to connect or send data.", minimum=0.1
    )
    debug_dirs: tuple[str, ...] = setting(
        ("/usr/lib/debug",), "Debug-info trees (Debian, Fedora and .build-id layouts)."
    )
    deb_dirs: tuple[str, ...] = setting(
        (), "Directories of linux-image-*-dbg .deb/.ddeb packages to import from."
    )
    lease_ttl_s: float = setting(
        300.0, "Seconds a build lease is valid; a crashed builder's lease expires.", minimum=1.0
    )
    wait_timeout_s: float = setting(
        600.0, "Seconds to wait for another process's build before giving up.", minimum=1.0
    )
    failure_ttl_s: float = setting(
        300.0, "Seconds a build-id that no source has is remembered in the shared tier.",
        minimum=0.0,
    )
    fetch_timeout_s: float = setting(
        120.0, "Seconds 'crashfleet analyze' waits for a source to deliver a pack before it "
        "analyzes with the dump's own symbols.", minimum=0.0,
    )


@dataclass(frozen=True)
class AnalyzerSettings:
    """The analyzer service: consumer group, retries, reports and metrics."""

    group_id: str = setting("crashfleet-analyzer", "Kafka consumer group of the analyzers.")
    session_timeout_s: float = setting(
        10.0, "Consumer group session timeout: a dead worker's partitions move after this.",
        minimum=1.0,
    )
    retry_backoff_s: float = setting(
        2.0, "First delay before retrying an event whose dependency (S3, store, Kafka, symbol "
        "source) did not answer; doubles per attempt. Such events are never dead-lettered.",
        minimum=0.0)
    retry_backoff_max_s: float = setting(30.0, "Longest delay between those retries.",
                                         minimum=0.0)
    in_flight: int = setting(
        4, "Events a worker processes at once (S3 reads overlap in threads; results are "
        "stored and announced in order); 1: one at a time.", minimum=1)
    commit_interval_s: float = setting(
        1.0, "Finished offsets are committed at most this often (always when idle and on "
        "the way out); 0: after every event.", minimum=0.0)
    report_suffix: str = setting(".report.json", "Reports are stored at <dump key><suffix>.")
    block_cache_mib: int = setting(
        16, "Memory for cached dump blocks per worker (ranged reads from S3).", minimum=1
    )
    metrics_port: int = setting(9464, "Port of the analyzer's /metrics endpoint; 0 for none.",
                                minimum=0)
    # Least privilege (issue 18): /metrics answers on loopback unless told otherwise.
    metrics_addr: str = setting(
        "127.0.0.1", "Address the analyzer's /metrics endpoint binds to; a Prometheus on another "
        "machine needs the address it scrapes (0.0.0.0: every interface)."
    )
    top_clusters: int = setting(
        20, "Clusters exported by name in metrics; the rest are summed as 'other'.", minimum=1
    )


@dataclass(frozen=True)
class WebSettings:
    """The triage web UI and JSON API (`crashfleet web`)."""

    host: str = setting("127.0.0.1", "Address the web UI listens on (loopback by default).")
    port: int = setting(8080, "Port of the web UI.", minimum=1)
    token: str = setting(
        "", "Bearer token required for triage changes (and for reads with require_auth); "
        "set it through the environment only, never in the file.", secret=True,
    )
    proxy_user_header: str = setting(
        "", "Header a trusted reverse proxy sets to the authenticated user name "
        "(e.g. X-Forwarded-User); empty: no proxy authentication."
    )
    require_auth: bool = setting(
        False, "Reads need the token or the proxy header too (a shared deployment)."
    )
    download_ttl_s: int = setting(
        300, "Seconds a dump download link (presigned S3 URL) stays valid.", minimum=1
    )


@dataclass(frozen=True)
class Settings:
    """All settings, one section per field."""

    log: LogSettings = field(default_factory=LogSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    store: StoreSettings = field(default_factory=StoreSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    analyzer: AnalyzerSettings = field(default_factory=AnalyzerSettings)
    symbols: SymbolsSettings = field(default_factory=SymbolsSettings)
    web: WebSettings = field(default_factory=WebSettings)
