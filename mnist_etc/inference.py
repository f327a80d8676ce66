"""Batch inference of the test split through Triton, written as the course project's infer.py did.

    artifacts/inference/<model>_v<version>.csv
        index,label,prediction,prob_0,...,prob_9      (index = position in the model's test split)

The accuracy over Triton is compared with the in-process (TensorFlow) accuracy that the export recorded on
the same split; they must be equal, since serving must not change a single prediction.

    >>> result = infer_test_split("mnist_etc")            # starts the embedded server for the duration
    >>> result = infer_test_split("mnist_etc", url="127.0.0.1:8001")
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.atomic import write_text_atomic
from mnist_etc.config import DataConfig
from mnist_etc.data import load_split
from mnist_etc.errors import UserError
from mnist_etc.triton.client import ClassifierClient
from mnist_etc.triton.repository import DEFAULT_REPOSITORY, export_record, validate_model_name

INFERENCE_DIR = Path("artifacts/inference")


@dataclass(frozen=True)
class InferenceResult:
    model: str
    version: int
    csv_path: Path
    n_images: int
    accuracy: float
    in_process_accuracy: float | None   # None when no export record is at hand (external server)
    seconds: float

    @property
    def matches_in_process(self) -> bool | None:
        return None if self.in_process_accuracy is None else self.accuracy == self.in_process_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "csv": str(self.csv_path), "n_images": self.n_images,
                "accuracy": self.accuracy, "in_process_accuracy": self.in_process_accuracy,
                "matches_in_process": self.matches_in_process, "seconds": self.seconds,
                "images_per_second": self.n_images / self.seconds if self.seconds else None}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predictions_csv(labels: np.ndarray, logits: np.ndarray) -> str:
    probs = softmax(logits.astype(np.float64))
    out = io.StringIO()
    out.write(",".join(["index", "label", "prediction"] + [f"prob_{k}" for k in range(probs.shape[1])]) + "\n")
    for i, (label, pred, p) in enumerate(zip(labels, logits.argmax(1), probs)):
        out.write(f"{i},{int(label)},{int(pred)}," + ",".join(f"{v:.6g}" for v in p) + "\n")
    return out.getvalue()


def _record_for(repository: Path, model: str, version: int) -> dict[str, Any] | None:
    try:
        return export_record(repository, model, version)[1]
    except UserError:
        return None


def infer_with_client(client: ClassifierClient, repository: Path = DEFAULT_REPOSITORY,
                      out_dir: Path = INFERENCE_DIR, batch_size: int | None = None,
                      data_config: DataConfig | None = None) -> InferenceResult:
    """Send the test split of the served model's source data, write the CSV, compare accuracies."""
    record = _record_for(Path(repository), client.model, client.version)
    if data_config is None:
        if record is None:
            raise UserError(f"no export record for {client.model!r} v{client.version} in {str(repository)!r}, so the "
                            f"test split is unknown; pass --repository holding the model, or a data config.")
        data_config = DataConfig.parse(record["source"]["data_config"])
    split = load_split(data_config)
    start = time.perf_counter()
    logits = client.infer(split.x_test, batch_size)
    seconds = time.perf_counter() - start
    accuracy = float((logits.argmax(1) == split.y_test).mean())
    path = Path(out_dir) / f"{client.model}_v{client.version}.csv"
    write_text_atomic(path, predictions_csv(split.y_test, logits))
    in_process = float(record["test_accuracy"]["tensorflow"]) if record and "test_accuracy" in record else None
    return InferenceResult(client.model, client.version, path, len(split.y_test), accuracy, in_process, seconds)


def infer_test_split(model: str, version: int | None = None, url: str | None = None,
                     repository: Path = DEFAULT_REPOSITORY, out_dir: Path = INFERENCE_DIR,
                     batch_size: int | None = None, startup_timeout: float = 120.0) -> InferenceResult:
    """Infer through the server at `url`, or through an embedded server started (and stopped) for this call."""
    validate_model_name(model)
    if url is not None:
        with ClassifierClient(url, model, version) as client:
            return infer_with_client(client, repository, out_dir, batch_size)
    from mnist_etc.triton.server import ServerConfig, TritonServer

    cfg = ServerConfig(Path(repository), model_control_mode="explicit", load_models=(model,),
                       startup_timeout=startup_timeout)
    with TritonServer(cfg) as server, ClassifierClient(server.grpc_url, model, version) as client:
        return infer_with_client(client, repository, out_dir, batch_size)
