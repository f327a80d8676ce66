"""Export a trained model (image -> logits) to ONNX with tf2onnx, and prove it computes what TensorFlow does.

The ONNX graph has input `input` float32 [batch, 28, 28, 1] and output `logits` float32 [batch, 10] with a
dynamic batch dimension. Before anything is published, ONNX Runtime and TensorFlow are run on the first 256
test images: the largest absolute logit difference must be <= 1e-4 and every predicted class identical,
otherwise `ParityError` is raised and nothing is written.

    >>> stored = load_model("artifacts/models/dev")
    >>> result = export_onnx(stored, Path("artifacts/exports/dev"))     # model.onnx + export.json
    >>> result.record["parity"], result.record["test_accuracy"]
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.data import DataSplit, load_split
from mnist_etc.errors import UserError
from mnist_etc.model_store import StoredModel
from mnist_etc.tensor_spec import DEFAULT_OPSET, IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME, check_opset
from mnist_etc.tf_quiet import tf

FORMAT_VERSION = 1
# Opset 17: within what Triton 2.51's onnxruntime backend (ORT 1.19) and ORT 1.32 both run, and what
# tf2onnx 1.17 emits well; newer opsets buy nothing for convolutions and dense layers.
PARITY_IMAGES = 256
PARITY_ATOL = 1e-4


class ParityError(UserError):
    """ONNX Runtime disagrees with TensorFlow beyond tolerance: the export is refused."""


@dataclass(frozen=True)
class ParityReport:
    n_images: int
    max_abs_diff: float
    class_mismatches: int
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol and self.class_mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    onnx_path: Path
    record: dict[str, Any]
    seconds: float


def convert_to_onnx(model: tf.keras.Model, opset: int = DEFAULT_OPSET,
                    metadata: dict[str, str] | None = None) -> Any:
    """The Keras image -> logits model as an ONNX ModelProto with a batch dimension named `batch`."""
    import onnx
    import tf2onnx
    from tf2onnx import logging as tf2onnx_logging

    check_opset(opset)
    tf2onnx_logging.set_level(logging.ERROR)  # its INFO lines about rewriters are noise to a user
    spec = [tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    graph_io = {t.name: t for t in [*proto.graph.input, *proto.graph.output]}
    if set(graph_io) != {INPUT_NAME, OUTPUT_NAME}:
        raise RuntimeError(f"tf2onnx produced tensors {sorted(graph_io)}, expected {INPUT_NAME!r} -> {OUTPUT_NAME!r}")
    for tensor in graph_io.values():  # tf2onnx names the free batch dimension unk__N; say what it is
        tensor.type.tensor_type.shape.dim[0].dim_param = "batch"
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    return proto


def tf_logits(model: tf.keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.concatenate([model(images[i:i + batch_size], training=False).numpy()
                           for i in range(0, len(images), batch_size)])


def ort_session(onnx_path: Path | bytes, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    source = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def ort_logits(session: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: images[i:i + batch_size]})[0]
                           for i in range(0, len(images), batch_size)])


def measure_parity(session: Any, model: tf.keras.Model, images: np.ndarray, atol: float = PARITY_ATOL) -> ParityReport:
    a, b = ort_logits(session, images), tf_logits(model, images)
    return ParityReport(len(images), float(np.abs(a - b).max()), int((a.argmax(1) != b.argmax(1)).sum()), atol)


def _source_summary(stored: StoredModel) -> dict[str, Any]:
    """What the export carries from its source model: config and seed, data, metrics, privacy."""
    keep = ("config", "data_config", "data", "metrics", "privacy", "created")
    return {"model_dir": str(stored.path.resolve()), **{k: stored.record[k] for k in keep if k in stored.record}}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import tf2onnx

    return {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def export_onnx(stored: StoredModel, out_dir: Path, split: DataSplit | None = None, opset: int = DEFAULT_OPSET,
                atol: float = PARITY_ATOL, source: dict[str, Any] | None = None) -> ExportResult:
    """Convert, check parity on 256 test images, and publish `out_dir/{model.onnx, export.json}` atomically.

    `split` defaults to the source model's own data split (its model.json); `source` adds provenance such
    as the sweep's winner.json or the MLflow model URI to the record.
    """
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise UserError(f"parity tolerance must be a number >= 0, got {atol!r}.")
    start = time.perf_counter()
    split = split or load_split(stored.data_config)
    model = stored.networks.full_model()
    cfg = stored.record.get("config", {})
    proto = convert_to_onnx(model, opset, metadata={
        "mnist_etc.source_model": str(stored.path.resolve()),
        "mnist_etc.config": json.dumps(cfg, sort_keys=True),
        "mnist_etc.seed": str(cfg.get("seed", "")),
    })
    data = proto.SerializeToString()
    session = ort_session(data)
    parity = measure_parity(session, model, split.x_test[:PARITY_IMAGES], atol)
    if not parity.passed:
        raise ParityError(
            f"ONNX Runtime disagrees with TensorFlow on {parity.n_images} test images of {stored.path}: max "
            f"absolute logit difference {parity.max_abs_diff:.3g} (accepted <= {atol:g}) and "
            f"{parity.class_mismatches} different predicted classes (accepted 0); nothing was exported.")
    y = split.y_test
    pred_tf, pred_ort = tf_logits(model, split.x_test).argmax(1), ort_logits(session, split.x_test).argmax(1)
    acc_tf, acc_ort = float((pred_tf == y).mean()), float((pred_ort == y).mean())
    seconds = time.perf_counter() - start
    record = {
        "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {**(source or {}), **_source_summary(stored)},
        "onnx": {"opset": opset, "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", *IMAGE_SHAPE]},
                 "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", 10]},
                 "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
        "parity": parity.to_dict(),
        # Over the whole test split: `mnist-etc infer` compares the served accuracy with the TensorFlow one.
        "test_accuracy": {"tensorflow": acc_tf, "onnxruntime": acc_ort, "n_images": int(len(y)),
                          "class_mismatches": int((pred_tf != pred_ort).sum())},
        "export_seconds": seconds,
        "versions": _versions(),
    }
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as tmp:
        (tmp / "model.onnx").write_bytes(data)
        write_json_atomic(tmp / "export.json", record)
    return ExportResult(out_dir, out_dir / "model.onnx", record, seconds)


def save_mlflow_onnx_model(stored: StoredModel, path: Path, opset: int = DEFAULT_OPSET,
                           source: dict[str, Any] | None = None) -> ExportResult:
    """The classifier as an MLflow model directory at `path` (the `onnx` flavour with its signature:
    mnist_etc.tracking.export.save_onnx_flavour). The ONNX is the one `export_onnx` makes and checks for parity
    with TensorFlow; its export.json goes beside MLmodel."""
    import tempfile

    from mnist_etc.tracking.export import save_onnx_flavour

    with tempfile.TemporaryDirectory(prefix="mnist-etc-mlflow-onnx-") as tmp:
        result = export_onnx(stored, Path(tmp) / "export", opset=opset, source=source)
        save_onnx_flavour(result.onnx_path, result.record, Path(path))
    return ExportResult(Path(path), Path(path) / "model.onnx", result.record, result.seconds)


def export_to_repository(stored: StoredModel, repository: Path, model_name: str, cfg: Any = None,
                         backends: tuple[str, ...] | None = None, source: dict[str, Any] | None = None,
                         opset: int = DEFAULT_OPSET, atol: float = PARITY_ATOL) -> tuple[ExportResult, Any]:
    """Export, check parity, then publish as the next version of `model_name` in the Triton repository.

    Returns the export (its `directory` is the published python-backend version directory) and the
    `PublishedVersion`. A failed parity check leaves the repository untouched.
    """
    import tempfile

    from mnist_etc.triton.model_config import BACKENDS
    from mnist_etc.triton.repository import add_version, validate_model_name

    validate_model_name(model_name)  # before minutes of work, not after
    backends = backends or BACKENDS
    with tempfile.TemporaryDirectory(prefix="mnist-etc-export-") as tmp:
        result = export_onnx(stored, Path(tmp) / "export", opset=opset, atol=atol, source=source)
        published = add_version(repository, model_name, result.onnx_path, result.record, cfg, backends)
    directory = published.version_dir(backends[0])
    return ExportResult(directory, directory / "model.onnx", result.record, result.seconds), published
