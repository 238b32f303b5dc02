from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.discovery import is_open_for_writing, scan


def _make(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # Debian/Ubuntu kdump-tools
        ({"202611251203/dump.202611251203": b"d", "202611251203/dmesg.202611251203": b"m"},
         [("202611251203/dump.202611251203", "debian-kdump-tools",
           "202611251203/dmesg.202611251203", "2026-11-25T12:03:00")]),
        ({"202611251203/dump-incomplete": b"d"}, []),
        ({"202611251203/vmcore.202611251203": b"d"},
         [("202611251203/vmcore.202611251203", "debian-kdump-tools", None,
           "2026-11-25T12:03:00")]),
        # makedumpfile's output is preferred over the raw fallback copy
        ({"202611251203/vmcore.202611251203": b"d", "202611251203/dump.202611251203": b"d"},
         [("202611251203/dump.202611251203", "debian-kdump-tools", None,
           "2026-11-25T12:03:00")]),
        ({"web01-202611251203/dump.202611251203": b"d"},
         [("web01-202611251203/dump.202611251203", "debian-kdump-tools", None,
           "2026-11-25T12:03:00")]),
        # RHEL/Fedora kdump
        ({"127.0.0.1-2026-11-25-12:03:44/vmcore": b"d",
          "127.0.0.1-2026-11-25-12:03:44/vmcore-dmesg.txt": b"m"},
         [("127.0.0.1-2026-11-25-12:03:44/vmcore", "rhel-kdump",
           "127.0.0.1-2026-11-25-12:03:44/vmcore-dmesg.txt", "2026-11-25T12:03:44")]),
        ({"127.0.0.1-2026-11-25-12:03:44/vmcore-incomplete": b"d",
          "127.0.0.1-2026-11-25-12:03:44/vmcore-dmesg-incomplete.txt": b"m"}, []),
        ({"10.1.2.3-2026-11-25-12:03:44/vmcore.flat": b"d"},
         [("10.1.2.3-2026-11-25-12:03:44/vmcore.flat", "rhel-kdump", None,
           "2026-11-25T12:03:44")]),
        # plain vmcore
        ({"vmcore": b"d"}, [("vmcore", "plain", None, None)]),
        ({"manual/vmcore": b"d"}, [("manual/vmcore", "plain", None, None)]),
        ({"notes.txt": b"x", "kexec_cmd": b"x"}, []),
    ],
)
def test_layouts(tmp_path: Path, files: dict[str, bytes],
                 expected: list[tuple[str, str, str | None, str | None]]) -> None:
    _make(tmp_path, files)
    found, refused = scan(tmp_path)
    assert refused == []
    got = [(os.path.relpath(c.path, tmp_path), c.layout,
            os.path.relpath(c.dmesg_path, tmp_path) if c.dmesg_path else None,
            c.crash_time_hint) for c in found]
    assert got == expected


def test_symlinks_are_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0")
    root = tmp_path / "crash"
    (root / "202611251203").mkdir(parents=True)
    (root / "vmcore").symlink_to(secret)
    (root / "202611251203" / "dump.202611251203").symlink_to(secret)
    (root / "202611251204").symlink_to(tmp_path)
    found, refused = scan(root)
    assert found == []
    assert sorted((os.path.relpath(r.path, root), r.reason) for r in refused) == [
        ("202611251203/dump.202611251203", "symbolic link"),
        ("202611251204", "symbolic link"),
        ("vmcore", "symbolic link"),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")
def test_crash_directory_not_owned_by_root_is_refused(tmp_path: Path) -> None:
    _make(tmp_path, {"202611251203/dump.202611251203": b"d"})
    os.chown(tmp_path / "202611251203", 65534, 65534)
    found, refused = scan(tmp_path)
    assert found == []
    assert [r.reason for r in refused] == ["crash directory owned by uid 65534, not root"]
    found, refused = scan(tmp_path, require_root_owner=False)
    assert len(found) == 1 and refused == []


def test_open_for_writing(tmp_path: Path) -> None:
    p = tmp_path / "dump"
    p.write_bytes(b"x" * 10)
    writer = open(p, "ab")  # noqa: SIM115 - held open on purpose
    fd = os.open(p, os.O_RDONLY)
    try:
        assert is_open_for_writing(fd, str(p)) is True
        writer.close()
        assert is_open_for_writing(fd, str(p)) is False
    finally:
        os.close(fd)
