"""Writers of small synthetic dumps for the decoder tests.

They follow the published layouts (makedumpfile diskdump_mod.h, the flattened format, ELF
cores) independently of the decoder's code, so a decoder bug does not cancel out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

PAGE = 4096
START_KERNEL_MAP = 0xFFFFFFFF80000000


def note(name: str, ntype: int, desc: bytes) -> bytes:
    n = name.encode() + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def prstatus(pid: int, rip: int) -> bytes:
    desc = bytearray(336)
    struct.pack_into("<I", desc, 32, pid)
    struct.pack_into("<Q", desc, 112 + 16 * 8, rip)
    return note("CORE", 1, bytes(desc))


def kdump(pages: Mapping[int, bytes], vmcoreinfo: bytes, *, max_mapnr: int = 64,
          compress: str = "zlib", notes: bytes = b"", release: str = "6.1.0-test",
          version: int = 6, timestamp: int = 1_700_000_000, zero_page: bool = True) -> bytes:
    """A kdump-compressed file holding ``pages`` (pfn -> 4096 bytes)."""
    hdr = bytearray(PAGE)
    hdr[0:8] = b"KDUMP   "
    struct.pack_into("<i", hdr, 8, version)
    for i, val in enumerate([b"Linux", b"host", release.encode(), b"#1 SMP", b"x86_64", b""]):
        hdr[12 + 65 * i : 12 + 65 * i + len(val)] = val
    bitmap_bytes = (max_mapnr + 7) // 8
    bitmap_blocks = 2 * max(1, -(-bitmap_bytes // PAGE))
    sub_blocks = 1 + -(-(104 + len(notes) + len(vmcoreinfo)) // PAGE)
    status = {"zlib": 1, "none": 0}[compress]
    struct.pack_into("<qq", hdr, 408, timestamp, 0)
    # sub_hdr_size counts the blocks after block 0 up to the bitmaps
    struct.pack_into("<iiiiIiiiii", hdr, 424, status, PAGE, sub_blocks, bitmap_blocks,
                     max_mapnr, 0, 0, 0, 0, 1)
    sub = bytearray(sub_blocks * PAGE)
    note_off = PAGE + 104
    vmci_off = note_off + len(notes)
    struct.pack_into("<Qi", sub, 0, 0, 31)
    struct.pack_into("<QQQQ", sub, 32, vmci_off, len(vmcoreinfo), note_off, len(notes))
    struct.pack_into("<QQQ", sub, 80, 0, max_mapnr, max_mapnr)
    sub[104 : 104 + len(notes)] = notes
    sub[104 + len(notes) : 104 + len(notes) + len(vmcoreinfo)] = vmcoreinfo
    bm = bytearray(bitmap_blocks * PAGE)
    half = len(bm) // 2
    for pfn in pages:
        bm[pfn >> 3] |= 1 << (pfn & 7)
        bm[half + (pfn >> 3)] |= 1 << (pfn & 7)
    desc_off = (1 + sub_blocks + bitmap_blocks) * PAGE
    data_off = desc_off + 24 * len(pages)
    descs = bytearray()
    data = bytearray()
    zero_at = None
    if zero_page:
        zero_at = data_off
        z = zlib.compress(bytes(PAGE)) if compress == "zlib" else bytes(PAGE)
        data += z
        zero_len = len(z)
    for pfn in sorted(pages):
        page = pages[pfn]
        assert len(page) == PAGE
        if zero_page and page == bytes(PAGE):
            descs += struct.pack("<qIIQ", zero_at, zero_len, status, 0)
            continue
        body = zlib.compress(page) if compress == "zlib" else page
        descs += struct.pack("<qIIQ", data_off + len(data), len(body), status, 0)
        data += body
    return bytes(hdr) + bytes(sub) + bytes(bm) + bytes(descs) + bytes(data)


def flatten(image: bytes, chunk: int = 5000, *, rewrite: Mapping[int, bytes] | None = None,
            end_marker: bool = True) -> bytes:
    """The flattened form of ``image``: records of ``chunk`` bytes, out of order, plus optional
    later records overwriting ``rewrite`` ranges (offset -> bytes)."""
    out = bytearray(4096)
    out[0:12] = b"makedumpfile"
    struct.pack_into(">qq", out, 16, 1, 1)
    pieces = [(o, image[o : o + chunk]) for o in range(0, len(image), chunk)]
    pieces = pieces[1::2] + pieces[0::2]  # out of order on purpose
    for off, b in pieces:
        out += struct.pack(">qq", off, len(b)) + b
    for off, b in (rewrite or {}).items():
        out += struct.pack(">qq", off, len(b)) + b
    if end_marker:
        out += struct.pack(">qq", -1, -1)
    return bytes(out)


def elf_core(phys: Mapping[int, bytes], notes: bytes, *, memsz_extra: int = 0) -> bytes:
    """An ELF64 x86_64 core: one PT_NOTE, one PT_LOAD per ``phys`` entry (paddr -> bytes);
    ``memsz_extra`` zero bytes past each segment's file size (filtered ELF)."""
    phnum = 1 + len(phys)
    eh = bytearray(64)
    eh[0:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    struct.pack_into("<HHIQQQIHHHHHH", eh, 16, 4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    off = 64 + 56 * phnum
    ph = bytearray()
    body = bytearray()
    ph += struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, len(notes), len(notes), 0)
    body += notes
    for paddr, data in phys.items():
        at = off + len(body)
        ph += struct.pack("<IIQQQQQQ", 1, 7, at, paddr, paddr, len(data),
                          len(data) + memsz_extra, 0)
        body += data
    return bytes(eh) + bytes(ph) + bytes(body)


# -- a printk ringbuffer in kernel-image memory (phys_base 0) -------------------------------

PRB_VMCOREINFO = """OSRELEASE=6.1.0-test
BUILD-ID=0123456789abcdef0123456789abcdef01234567
PAGESIZE=4096
SYMBOL(prb)={prb:x}
SIZE(printk_ringbuffer)=88
OFFSET(printk_ringbuffer.desc_ring)=0
OFFSET(printk_ringbuffer.text_data_ring)=48
SIZE(prb_desc_ring)=48
OFFSET(prb_desc_ring.count_bits)=0
OFFSET(prb_desc_ring.descs)=8
OFFSET(prb_desc_ring.infos)=16
OFFSET(prb_desc_ring.head_id)=24
OFFSET(prb_desc_ring.tail_id)=32
SIZE(prb_desc)=24
OFFSET(prb_desc.state_var)=0
OFFSET(prb_desc.text_blk_lpos)=8
OFFSET(prb_data_blk_lpos.begin)=0
OFFSET(prb_data_blk_lpos.next)=8
SIZE(printk_info)=88
OFFSET(printk_info.seq)=0
OFFSET(printk_info.ts_nsec)=8
OFFSET(printk_info.text_len)=16
OFFSET(printk_info.caller_id)=20
OFFSET(prb_data_ring.size_bits)=0
OFFSET(prb_data_ring.data)=8
OFFSET(atomic_long_t.counter)=0
NUMBER(phys_base)=0
SYMBOL(init_top_pgt)={pgt:x}
NUMBER(pgtable_l5_enabled)=0
NUMBER(sme_mask)=0
"""


def printk_memory(records: list[tuple[bytes, int, int]], *, size_bits: int = 10,
                  count_bits: int = 4, start_lpos: int = 0, first_id: int = 0,
                  fixed_wrap: bool = True) -> tuple[bytearray, bytes]:
    """Physical memory (from 0) and VMCOREINFO for a lockless ring holding ``records``
    (text, ts_nsec, caller_id), written the way the kernel's data_alloc does. With
    ``fixed_wrap`` a block that ends exactly at the ring's end is not wrapped (kernel commit
    67e1b0052f6bb8)."""
    size, count = 1 << size_bits, 1 << count_bits
    mem = bytearray(0x40000)
    prb, descs, infos, data, pgt = 0x1000, 0x2000, 0x8000, 0x10000, 0x30000
    base = START_KERNEL_MAP
    struct.pack_into("<Q", mem, prb - 0x100, base + prb)  # the prb pointer variable
    lpos = start_lpos
    rid = first_id
    for seq, (text, ts, caller) in enumerate(records):
        blk = (8 + len(text) + 7) & ~7
        begin = lpos
        last = begin + blk - (1 if fixed_wrap else 0)
        if begin // size == last // size:
            nxt = begin + blk
            at = begin % size
        else:
            nxt = (begin // size + 1) * size + blk
            at = 0
        struct.pack_into("<Q", mem, data + at, rid)
        mem[data + at + 8 : data + at + 8 + len(text)] = text
        d = descs + (rid % count) * 24
        struct.pack_into("<QQQ", mem, d, (2 << 62) | rid, begin, nxt)
        i = infos + (rid % count) * 88
        struct.pack_into("<QQHxxI", mem, i, seq, ts, len(text), caller)
        lpos = nxt
        rid += 1
    head = rid - 1
    tail = max(first_id, head - count + 1)
    struct.pack_into("<IxxxxQQQQ", mem, prb, count_bits, base + descs, base + infos, head, tail)
    struct.pack_into("<IxxxxQ", mem, prb + 48, size_bits, base + data)
    info = PRB_VMCOREINFO.format(prb=base + prb - 0x100, pgt=base + pgt).encode()
    return mem, info
