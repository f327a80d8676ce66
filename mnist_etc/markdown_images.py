"""Markdown for readers that cannot open our files (the Prefect UI): local images inlined as data URIs.

    >>> md = inline_images("![Pareto front](pareto.png)", Path("artifacts/sweeps/smoke"))
    >>> md[:40]
    '![Pareto front](data:image/png;base64,iV'

The summary.md files on disk keep relative paths (they sit next to their images); the copy published as a
Prefect artifact carries the images themselves, so the UI shows them on any machine that can reach the server.
"""
from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path

IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
MAX_BYTES = 4_000_000    # a larger image is linked by name, not inlined (artifacts live in the Prefect database)


def inline_images(markdown: str, base: Path) -> str:
    """Each `![alt](path)` whose path is a local image file (relative to `base`) becomes a data URI."""

    def inline(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            return match.group(0)                     # already a URL (http:, data:, ...)
        path = Path(target) if Path(target).is_absolute() else Path(base) / target
        mime = mimetypes.guess_type(path.name)[0] or ""
        if not path.is_file() or not mime.startswith("image/") or path.stat().st_size > MAX_BYTES:
            return f"*{alt}: `{path}`*"
        return f"![{alt}](data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')})"

    return IMAGE.sub(inline, markdown)
