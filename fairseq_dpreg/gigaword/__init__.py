"""Gigaword helpers that live in the package (the pipeline itself is scripts/gigaword_data.py)."""
