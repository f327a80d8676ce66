"""Prefect tasks: see the module docstrings."""
