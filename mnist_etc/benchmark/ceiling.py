"""The in-process ceiling: ONNX Runtime on the same model.onnx, at the request batch size, in this process.

Serving efficiency = served images/s (perf_analyzer) / in-process images/s. Below 1 is the price of
serving (network, serialisation, the Python backend's IPC); above 1 is possible when Triton's dynamic
batcher merges requests into batches larger than the request size, which the ceiling does not do.

    >>> c = measure_in_process(Path("triton/model_repository/mnist_etc/1/model.onnx"), batch_size=5)
    >>> c.images_per_second
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.tensor_spec import IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME
from mnist_etc.triton.repository import versions


@dataclass(frozen=True)
class Ceiling:
    batch_size: int
    images_per_second: float
    batches: int
    seconds: float
    threads: int          # ONNX Runtime intra-op threads; 0 = its default (all cores)
    onnx_path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_onnx(repository: Path, served: str, version: int | None) -> Path | None:
    """model.onnx of the benchmarked version in a local repository, or None (e.g. an external server's)."""
    available = versions(repository, served)
    if not available:
        return None
    v = version if version is not None else available[-1]
    path = Path(repository) / served / str(v) / "model.onnx"
    return path if path.is_file() else None


def measure_in_process(onnx_path: Path, batch_size: int, seconds: float = 3.0, threads: int = 0,
                       warmup: int = 20) -> Ceiling:
    """Images per second of back-to-back `session.run` calls on random batches of `batch_size`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    # Random pixels, as perf_analyzer sends by default; the model's cost does not depend on the values.
    x = np.random.default_rng(0).random((batch_size, *IMAGE_SHAPE), dtype=np.float32)
    for _ in range(warmup):
        session.run([OUTPUT_NAME], {INPUT_NAME: x})
    n = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        session.run([OUTPUT_NAME], {INPUT_NAME: x})
        n += 1
        if n % 16 == 0:   # perf_counter every call would be a visible share of a ~100 us call
            elapsed = time.perf_counter() - start
    elapsed = time.perf_counter() - start
    return Ceiling(batch_size, n * batch_size / elapsed, n, elapsed, threads, str(onnx_path))
