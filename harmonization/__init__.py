"""Data package: the cross-border harmonization schema (crossborder.json)."""
