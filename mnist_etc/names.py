"""Names that become paths, URLs and registry entries (studies, models, runs): one rule for all of them."""
from __future__ import annotations

import re
from typing import Any

from mnist_etc.errors import UserError

# Letters, digits, '_' and '-', starting with a letter or digit: no '/', '..' or hidden names, so a name can
# never step out of its directory, and it is a valid Triton model name, MLflow name and URL path segment.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def validate_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(f"{what} name {name!r} is not accepted; use 1-64 letters, digits, '-' or '_', starting "
                        f"with a letter or digit (no '/', '.' or spaces).")
    return name
