"""crashfleet: the application shell — CLI, settings, logging and the local service stack.

The product packages (``agent``, ``ingest``, ``analyzer``, ``symbol_cache``) hold the logic;
this package wires them into one command and one configuration.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
