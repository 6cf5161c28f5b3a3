"""Not written yet: these algorithms take the per-pair path until their kernel lands."""
