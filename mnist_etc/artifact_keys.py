"""Keys of Prefect artifacts, made here without Prefect so library and flows name them the same way."""
from __future__ import annotations

import re


def artifact_key(*parts: str) -> str:
    """`parts` joined by dashes as a Prefect artifact key: lowercase letters, digits and dashes only.

    >>> artifact_key("benchmark", "Smoke_20240101")
    'benchmark-smoke-20240101'
    """
    return re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())
