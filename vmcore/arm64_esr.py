"""arm64 exception syndrome (ESR_ELx) decoding: the arm64 counterpart of the x86 page-fault
error code.

Field layout from the Arm ARM (D17.2.37 ESR_EL1) as the kernel names it in
``arch/arm64/include/asm/esr.h``; the fault-status texts are those ``arch/arm64/mm/fault.c``
prints (``FSC = 0x05: level 1 translation fault``), the class names those of
``esr_class_str()`` in ``arch/arm64/kernel/traps.c``. Pure: an integer in, a record out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EsrInfo", "decode_esr"]

# EC -> (ESR_ELx_EC_* short name, the kernel's text)
_EC: dict[int, tuple[str, str]] = {
    0x00: ("UNKNOWN", "Unknown/Uncategorized"),
    0x01: ("WFx", "WFI/WFE"),
    0x03: ("CP15_32", "CP15 MCR/MRC"),
    0x04: ("CP15_64", "CP15 MCRR/MRRC"),
    0x05: ("CP14_MR", "CP14 MCR/MRC"),
    0x06: ("CP14_LS", "CP14 LDC/STC"),
    0x07: ("FP_ASIMD", "ASIMD"),
    0x08: ("CP10_ID", "CP10 MRC/VMRS"),
    0x09: ("PAC", "PAC"),
    0x0C: ("CP14_64", "CP14 MCRR/MRRC"),
    0x0D: ("BTI", "BTI"),
    0x0E: ("ILL", "PSTATE.IL"),
    0x11: ("SVC32", "SVC (AArch32)"),
    0x12: ("HVC32", "HVC (AArch32)"),
    0x13: ("SMC32", "SMC (AArch32)"),
    0x15: ("SVC64", "SVC (AArch64)"),
    0x16: ("HVC64", "HVC (AArch64)"),
    0x17: ("SMC64", "SMC (AArch64)"),
    0x18: ("SYS64", "MSR/MRS (AArch64)"),
    0x19: ("SVE", "SVE"),
    0x1A: ("ERET", "ERET/ERETAA/ERETAB"),
    0x1C: ("FPAC", "FPAC"),
    0x1D: ("SME", "SME"),
    0x1F: ("IMP_DEF", "EL3 IMP DEF"),
    0x20: ("IABT_LOW", "IABT (lower EL)"),
    0x21: ("IABT_CUR", "IABT (current EL)"),
    0x22: ("PC_ALIGN", "PC Alignment"),
    0x24: ("DABT_LOW", "DABT (lower EL)"),
    0x25: ("DABT_CUR", "DABT (current EL)"),
    0x26: ("SP_ALIGN", "SP Alignment"),
    0x27: ("MOPS", "MOPS"),
    0x28: ("FP_EXC32", "FP (AArch32)"),
    0x2C: ("FP_EXC64", "FP (AArch64)"),
    0x2F: ("SERROR", "SError"),
    0x30: ("BREAKPT_LOW", "Breakpoint (lower EL)"),
    0x31: ("BREAKPT_CUR", "Breakpoint (current EL)"),
    0x32: ("SOFTSTP_LOW", "Software Step (lower EL)"),
    0x33: ("SOFTSTP_CUR", "Software Step (current EL)"),
    0x34: ("WATCHPT_LOW", "Watchpoint (lower EL)"),
    0x35: ("WATCHPT_CUR", "Watchpoint (current EL)"),
    0x38: ("BKPT32", "BKPT (AArch32)"),
    0x3A: ("VECTOR32", "Vector catch (AArch32)"),
    0x3C: ("BRK64", "BRK (AArch64)"),
}
_ABORTS = (0x20, 0x21, 0x24, 0x25)
_DATA_ABORTS = (0x24, 0x25)
# Fault status codes with a level in bits [1:0] (kind, first code); the kernel prints
# "level N <kind>".
_LEVELLED = (
    (0x00, "address size fault"),
    (0x04, "translation fault"),
    (0x08, "access flag fault"),
    (0x0C, "permission fault"),
    (0x14, "synchronous external abort (translation table walk)"),
    (0x1C, "synchronous parity or ECC error (translation table walk)"),
)
_FSC_OTHER = {
    0x10: "synchronous external abort",
    0x11: "synchronous tag check fault",
    0x18: "synchronous parity or ECC error",
    0x21: "alignment fault",
    0x29: "level -1 address size fault",  # LPA2 (52-bit VA, 4K/16K pages)
    0x2B: "level -1 translation fault",
    0x30: "TLB conflict abort",
    0x31: "Unsupported atomic hardware update fault",
    0x34: "implementation fault (lockdown abort)",
    0x35: "implementation fault (unsupported exclusive)",
    0x3D: "section domain fault",
    0x3E: "page domain fault",
}
# BRK immediates the kernel uses (arch/arm64/include/asm/brk-imm.h)
_BRK = ((0x800, 0xFFFF, "BUG"), (0x900, 0xFF00, "KASAN"), (0x5500, 0xFF00, "UBSAN"),
        (0x8000, 0xF000, "CFI"), (0x100, 0xFFFF, "FAULT"), (0x004, 0xFFFF, "KPROBES"),
        (0x400, 0xFFFE, "KGDB"))


@dataclass(frozen=True)
class EsrInfo:
    """One ESR_ELx value decoded.

    ``ec`` exception class (bits 31:26) with ``ec_name`` (``DABT_CUR``) and ``ec_text``
    (``DABT (current EL)``); ``il`` instruction length 32 bits; ``iss`` bits 24:0. For aborts:
    ``fsc`` fault status code, ``fsc_text`` as the kernel prints it, ``fault_level`` the
    translation-table level (-1..3, None for faults without one), ``write`` (data aborts: WnR),
    ``cache_maintenance`` (CM), ``s1ptw`` (stage-1 walk), ``external`` (EA), ``far_valid``
    (not FnV). ``access`` ``read``/``write``/``instruction fetch``; ``mode`` ``kernel``
    (current EL) or ``user`` (lower EL). For BRK: ``brk_imm`` and ``brk_kind`` (``BUG``)."""

    esr: int
    ec: int
    ec_name: str
    ec_text: str
    il: bool
    iss: int
    fsc: int | None = None
    fsc_text: str | None = None
    fault_level: int | None = None
    write: bool | None = None
    cache_maintenance: bool | None = None
    s1ptw: bool | None = None
    external: bool | None = None
    far_valid: bool | None = None
    access: str | None = None
    mode: str | None = None
    brk_imm: int | None = None
    brk_kind: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """Short names of what is set: the class, ``WnR``, ``CM``, ``S1PTW``, ``EA``, ``FnV``,
        the fault kind and level (``TRANSLATION_L1``), or the BRK kind (``BRK_BUG``)."""
        out = [self.ec_name]
        for on, name in ((self.write, "WnR"), (self.cache_maintenance, "CM"),
                         (self.s1ptw, "S1PTW"), (self.external, "EA"),
                         (self.far_valid is False, "FnV")):
            if on:
                out.append(name)
        if self.fsc_text is not None:
            kind = self.fsc_text.split(" (")[0]
            if self.fault_level is not None:
                kind = kind.split(" ", 2)[2]  # "level 1 translation fault" -> kind
            name = kind.replace(" fault", "").replace(" ", "_").upper()
            out.append(f"{name}_L{self.fault_level}" if self.fault_level is not None else name)
        if self.brk_kind:
            out.append(f"BRK_{self.brk_kind}")
        return tuple(out)


def _fsc(fsc: int) -> tuple[str, int | None]:
    for base, kind in _LEVELLED:
        if base <= fsc < base + 4:
            return f"level {fsc - base} {kind}", fsc - base
    if fsc in (0x29, 0x2B):
        return _FSC_OTHER[fsc], -1
    return _FSC_OTHER.get(fsc, f"unknown {fsc}"), None


def decode_esr(esr: int) -> EsrInfo:
    """Decode an ESR_ELx value (64 bits; bits above 31 are ISS2 and ignored here)."""
    esr &= 2**64 - 1
    ec = (esr >> 26) & 0x3F
    name, text = _EC.get(ec, (f"EC_{ec:#04x}", "UNRECOGNIZED EC"))
    iss = esr & 0x1FFFFFF
    info = EsrInfo(esr=esr, ec=ec, ec_name=name, ec_text=text, il=bool(esr >> 25 & 1), iss=iss)
    if ec in _ABORTS:
        fsc = iss & 0x3F
        fsc_text, level = _fsc(fsc)
        data = ec in _DATA_ABORTS
        write = bool(iss >> 6 & 1) if data else None
        cm = bool(iss >> 8 & 1) if data else None
        # a cache-maintenance fault reports WnR=1 for what is a read (fault.c is_write_abort)
        access = ("instruction fetch" if not data
                  else "write" if write and not cm else "read")
        return EsrInfo(
            esr=esr, ec=ec, ec_name=name, ec_text=text, il=info.il, iss=iss, fsc=fsc,
            fsc_text=fsc_text, fault_level=level, write=write, cache_maintenance=cm,
            s1ptw=bool(iss >> 7 & 1), external=bool(iss >> 9 & 1),
            far_valid=not bool(iss >> 10 & 1), access=access,
            mode="kernel" if ec in (0x21, 0x25) else "user")
    if ec == 0x3C:
        imm = iss & 0xFFFF
        kind = next((k for base, mask, k in _BRK if imm & mask == base), None)
        return EsrInfo(esr=esr, ec=ec, ec_name=name, ec_text=text, il=info.il, iss=iss,
                       brk_imm=imm, brk_kind=kind)
    return info
