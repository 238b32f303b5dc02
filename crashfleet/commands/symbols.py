"""``crashfleet symbols fetch|import|warm|ls|gc|lookup``."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from crashfleet.cli import App
from foundation.errors import UsageError

if TYPE_CHECKING:
    from symbol_cache.cache import SymbolCache
    from symbol_cache.pack import SymbolPack

Handler = Callable[[argparse.Namespace, App], int]

# x86-64: the kernel image lives in [__START_KERNEL_map, MODULES_VADDR); KASLR slides only it.
_IMAGE_START = 0xFFFFFFFF80000000
_MODULES_START = 0xFFFFFFFFC0000000
_HEXID = re.compile(r"(?:0x)?[0-9a-fA-F]{16,128}")

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``symbols`` command group."""
    p = sub.add_parser("symbols",
                       help="fetch, import, inspect and look up kernel debug symbol packs")
    ssub = p.add_subparsers(dest="symbols_command", metavar="SUBCOMMAND")
    ssub.required = True

    fetch = ssub.add_parser("fetch", help="get the pack of a kernel (build-id or release)")
    fetch.add_argument("kernel", help="build-id (hex) or kernel release")
    fetch.set_defaults(func=_fetch)

    imp = ssub.add_parser("import", help="build a pack from a vmlinux or a -dbg .deb/.ddeb")
    imp.add_argument("file", type=Path)
    imp.add_argument("--build-id", help="refuse the file unless it has this build-id")
    imp.set_defaults(func=_import)

    warm = ssub.add_parser("warm", help="make sure packs exist for several kernels")
    warm.add_argument("kernels", nargs="+", help="build-ids or releases")
    warm.set_defaults(func=_warm)

    ls = ssub.add_parser("ls", help="list the packs of the local (and shared) tier")
    ls.set_defaults(func=_ls)

    gc = ssub.add_parser("gc", help="evict least recently used packs down to the cap")
    gc.add_argument("--cap-mib", type=int, help="evict down to this many MiB (default: cap)")
    gc.set_defaults(func=_gc)

    lookup = ssub.add_parser("lookup", help="resolve addresses to symbol+offset/size")
    lookup.add_argument("kernel", help="build-id (hex) or kernel release")
    lookup.add_argument("addresses", nargs="+", help="hex addresses (runtime, see --kaslr)")
    lookup.add_argument("--kaslr-offset", default="0",
                        help="the dump's KERNELOFFSET (hex), subtracted from kernel addresses")
    lookup.add_argument("--lines", action="store_true", help="also print file:line")
    lookup.set_defaults(func=_lookup)


def _cache(app: App) -> SymbolCache:
    from crashfleet.wiring.symbols import open_cache

    return open_cache(app.settings())


def _get(app: App, kernel: str) -> SymbolPack:
    cache = _cache(app)
    if _HEXID.fullmatch(kernel):
        return cache.get(kernel)  # garbage ids fail there with a build-id message
    return cache.get_by_release(kernel)


def _describe(pack: SymbolPack) -> str:
    m = pack.meta
    return (f"{m.build_id}  {m.release or '?'}  {pack.size} bytes  {len(pack.symbols)} symbols"
            f"  {len(pack.orc)} orc  {len(pack.types)} types  (from {m.source})")


def _fetch(args: argparse.Namespace, app: App) -> int:
    print(_describe(_get(app, args.kernel)))
    return 0


def _import(args: argparse.Namespace, app: App) -> int:
    from symbol_cache.sources.debimport import extract_vmlinux

    cache = _cache(app)
    path: Path = args.file
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix in (".deb", ".ddeb"):
        cache.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache.workdir) as tmp:
            vmlinux = Path(tmp) / "vmlinux"
            if extract_vmlinux(path, vmlinux) is None:
                print(f"crashfleet: error: {path}: no vmlinux in this package", file=sys.stderr)
                return 1
            pack = cache.import_vmlinux(vmlinux, expect_build_id=args.build_id, source="deb")
    else:
        pack = cache.import_vmlinux(path, expect_build_id=args.build_id, source="file")
    print(_describe(pack))
    return 0


def _warm(args: argparse.Namespace, app: App) -> int:
    from symbol_cache.errors import SymbolCacheError

    failed = 0
    for kernel in args.kernels:
        try:
            print(_describe(_get(app, kernel)))
        except SymbolCacheError as exc:
            print(f"{kernel}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _ls(args: argparse.Namespace, app: App) -> int:
    cache = _cache(app)
    for bid, size, used in cache.disk.entries():
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(used))
        print(f"disk    {bid}  {size:>10}  last used {stamp}")
    if cache.shared is not None:
        for bid, size in cache.shared.list():
            print(f"shared  {bid}  {size:>10}")
    return 0


def _gc(args: argparse.Namespace, app: App) -> int:
    cache = _cache(app)
    before = cache.disk.total_bytes()
    cache.disk.gc(None if args.cap_mib is None else args.cap_mib << 20)
    print(f"disk tier: {before} -> {cache.disk.total_bytes()} bytes")
    return 0


def _lookup(args: argparse.Namespace, app: App) -> int:
    try:
        offset = int(args.kaslr_offset, 16)
        addresses = [int(a, 16) for a in args.addresses]
    except ValueError:
        raise UsageError("addresses and --kaslr-offset are hex numbers") from None
    pack = _get(app, args.kernel)
    status = 0
    for addr in addresses:
        # The slide moves the kernel image only; per-cpu offsets and module addresses stay.
        link = addr - offset if _IMAGE_START <= addr < _MODULES_START else addr
        hit = pack.symbols.lookup(link)
        if hit is None:
            status = 1
        where = ""
        if args.lines:
            line = pack.line_for(link)
            where = f" {line}" if line is not None else " ?"
        print(f"{addr:016x} {hit if hit is not None else '?'}{where}")
    return status
