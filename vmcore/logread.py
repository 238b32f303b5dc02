"""The kernel log of an opened dump: the light path behind ``crashfleet analyze --log``.

Kept apart from :mod:`vmcore.analyze` so printing the log imports neither the oops parser
nor the report schema.
"""

from __future__ import annotations

from vmcore.arch import kernel_memory
from vmcore.errors import CorruptDump
from vmcore.formats import Dump
from vmcore.printk import PrintkLog, read_printk
from vmcore.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo

__all__ = ["read_log"]


def read_log(dump: Dump) -> tuple[VmcoreInfo, PrintkLog]:
    """VMCOREINFO and the printk records of an opened dump."""
    if dump.vmcoreinfo_blob is None:
        raise CorruptDump("the dump has no VMCOREINFO (QEMU: -device vmcoreinfo missing?)")
    info = parse_vmcoreinfo(dump.vmcoreinfo_blob)
    return info, read_printk(kernel_memory(dump, info), info)
