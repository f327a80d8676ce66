"""The exception types the CLI turns into one sentence and a non-zero exit; anything else is a bug and keeps
its trace.

- `UserError`: a mistake a user can make (bad option, bad file, bad name).
- `DiskFull`: a write failed because the disk, a quota or the file-size limit ran out. Not a bug and not bad
  input: the machine needs room. `mnist_etc.atomic` raises it naming the artifact being published.
"""
from __future__ import annotations

import errno
from pathlib import Path


class UserError(ValueError):
    """A problem with the user's input: the message names the bad value and what is accepted."""


# errno -> (what happened, what the user does about it)
DISK_FULL_ERRNOS = {
    errno.ENOSPC: ("no space left on device", "free some space and rerun"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota and rerun"),
    errno.EFBIG: ("file size limit exceeded", "raise the limit (ulimit -f) and rerun"),
}


def is_disk_full(exc: object) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


class DiskFull(OSError):
    """An OSError with errno ENOSPC, EDQUOT or EFBIG whose message is one sentence naming the path written:
    "no space left on device while writing artifacts/models/m/encoder.weights.h5: free some space and rerun."
    """

    @classmethod
    def of(cls, exc: OSError, path: str | Path | None = None) -> "DiskFull":
        """`exc` (a disk-full OSError) naming `path`, else the file it names itself (the destination of a copy)."""
        named = path if path is not None else (exc.filename2 or exc.filename)
        return cls(exc.errno, exc.strerror, None if named is None else str(named))

    def __str__(self) -> str:
        what, fix = DISK_FULL_ERRNOS.get(self.errno, (self.strerror or "write failed", "free some space and rerun"))
        where = f" while writing {self.filename}" if self.filename else ""
        return f"{what}{where}: {fix}."
