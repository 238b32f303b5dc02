"""Transport security from settings: the store's URL with its TLS parameters and a password
read from a credential file (S3's CA bundle and Kafka's TLS/SASL options are applied by the
adapters' own ``from_settings`` / ``kafka_client_options``)."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from foundation.errors import ConfigError
from foundation.secrets import read_secret_file
from foundation.settings import StoreSettings

__all__ = ["store_url"]


def store_url(store: StoreSettings) -> str:
    """``store.url`` with ``sslmode``/``sslrootcert`` and the password file applied
    (PostgreSQL only; a SQLite URL is returned as it is)."""
    if not (store.sslmode or store.sslrootcert or store.password_file):
        return store.url
    url = make_url(store.url)
    if not url.drivername.startswith("postgresql"):
        raise ConfigError("store.sslmode, sslrootcert and password_file apply to PostgreSQL "
                          "only", key="store.url")
    if store.password_file:
        url = url.set(password=read_secret_file(store.password_file, key="store.password_file"))
    query = dict(url.query)
    if store.sslmode:
        query["sslmode"] = store.sslmode
    if store.sslrootcert:
        query["sslrootcert"] = store.sslrootcert
    return url.set(query=query).render_as_string(hide_password=False)
