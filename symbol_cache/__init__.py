"""symbol_cache."""
