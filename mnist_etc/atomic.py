"""Publish artifacts whole or not at all: write into a hidden staging directory, rename when complete.

    with staged_dir(Path("artifacts/models/m1")) as tmp:
        ...write files into tmp...
    # artifacts/models/m1 now holds everything, or (on any exception) nothing was left behind

A disk that fills up (or a file-size limit) while publishing surfaces as `mnist_etc.errors.DiskFull`, naming
the published path rather than the hidden staging one: what the user sees is "no space left on device while
writing artifacts/models/m1/encoder.weights.h5: free some space and rerun."
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from mnist_etc.errors import DiskFull, is_disk_full


def _published_name(exc: OSError, tmp: Path, final: Path) -> Path:
    """The path a disk-full error names, moved from the staging directory to where it was being published."""
    named = exc.filename2 or exc.filename   # a copy's destination, else the file opened
    if named is None:
        return final   # a failed write() names no file: the artifact being published is the best we know
    named, tmp = Path(os.path.abspath(named)), Path(os.path.abspath(tmp))
    if named == tmp or tmp in named.parents:
        return final / named.relative_to(tmp)
    return named


def _read_umask() -> int:
    # Setting the umask to read it back is process-wide; done once, at import, not while threads write files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def staged_dir(final: Path, replace: bool = True) -> Iterator[Path]:
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)   # mkdtemp's 0700 would make the published directory owner-only
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull.of(exc, final) from exc
        raise
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise DiskFull.of(exc, _published_name(exc, tmp, final)) from exc
        raise
    old = None
    try:
        if final.exists():
            if not replace:
                raise FileExistsError(final)
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException as exc:
        if old is not None and not final.exists():
            os.replace(old, final)   # the previous version comes back rather than staying hidden
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise DiskFull.of(exc, final) from exc
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_file_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(tmp)` writes the file at a temporary name beside `path`, which it then replaces whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFull.of(exc, path) from exc
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_file_atomic(path, lambda tmp: tmp.write_text(text))


def jsonable(value: Any) -> Any:
    """Plain JSON: infinities become the string "inf" (float("inf") reads them back), numpy becomes Python."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
