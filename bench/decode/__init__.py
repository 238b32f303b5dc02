"""Decode benchmark: crashfleet's dump decoder side by side with makedumpfile, crash, drgn."""
