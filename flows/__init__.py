"""Prefect flows: see the module docstrings."""
