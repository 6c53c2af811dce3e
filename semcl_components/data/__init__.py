"""Embedded data: a deterministic multi-organ CT phantom generator and MSD-style datalists."""
