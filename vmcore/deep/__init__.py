"""Deep analysis with symbols: the crashed task, its unwound stack, modules and findings read
from the dump's memory with the kernel's symbol pack.

Public surface: :func:`analyze_memory`, its result :class:`MemoryAnalysis`, :func:`report_parts`
(its report records) and :class:`PackMismatch`.
"""

from vmcore.deep.match import PackMismatch
from vmcore.deep.run import MemoryAnalysis, analyze_memory, report_parts

__all__ = ["MemoryAnalysis", "PackMismatch", "analyze_memory", "report_parts"]
