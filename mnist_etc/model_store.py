"""A trained model on disk: weights of the three networks plus `model.json` (config, data split, seed,
metrics, epsilon, per-epoch history) and the per-epoch example images.

    artifacts/models/<name>/
        model.json  encoder.weights.h5  decoder.weights.h5  classifier.weights.h5
        examples/ae_epoch_<k>/orig_<digit>.png, rec_<digit>.png
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.data import DataSplit
from mnist_etc.errors import UserError
from mnist_etc.models import Networks
from mnist_etc.training import EpochHook, TrainResult, train

FORMAT_VERSION = 1
WEIGHT_FILES = {"encoder": "encoder.weights.h5", "decoder": "decoder.weights.h5",
                "classifier": "classifier.weights.h5"}


def default_model_name(cfg: TrainConfig) -> str:
    """Named after the config, in the spirit of the course project's ae_h<hid>_e<epochs>[_private]."""
    ae = f"ae{cfg.ae_epochs}" + (f"dp{cfg.ae_noise_multiplier:g}" if cfg.ae_private else "")
    clf = f"clf{cfg.clf_epochs}" + (f"dp{cfg.clf_noise_multiplier:g}" if cfg.clf_private else "")
    return f"h{cfg.hid_dim}_{ae}_{clf}_s{cfg.seed}"


def model_record(result: TrainResult, split: DataSplit) -> dict[str, Any]:
    p = result.privacy
    return {
        "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": result.config.to_dict(),
        "data": split.describe(),
        "data_config": split.config.to_dict(),
        "metrics": result.metrics,
        "privacy": p.as_dict(),
        "history": result.history,
    }


def save_networks(nets: Networks, directory: Path) -> None:
    for part, filename in WEIGHT_FILES.items():
        save_weights_file(getattr(nets, part), Path(directory) / filename)


class _WeightsImage:
    """The one thing Keras' H5IOStore asks of a zip archive: `writestr(name, bytes)`; here it keeps the bytes."""

    data = b""

    def writestr(self, name: str, data: bytes) -> None:
        self.data = data


def save_weights_file(network: Any, path: Path) -> None:
    """`network.save_weights(path)` (the `.weights.h5` format `load_weights` reads), built in memory and written
    by Python. HDF5 writing to the disk itself kills the process (SIGSEGV in h5py's File.close) when a full disk
    or a file-size limit fails its last flush: no staging directory cleaned up, no message. Built in memory, the
    write can only fail in Python, with an OSError the publishing code handles."""
    from keras.src.saving import saving_lib   # Keras 2.15: how its .keras archive stores model.weights.h5

    image = _WeightsImage()
    store = saving_lib.H5IOStore(Path(path).name, archive=image, mode="w")
    saving_lib._save_state(network, weights_store=store, assets_store=None, inner_path="",
                           visited_trackables=set())
    store.close()
    Path(path).write_bytes(image.data)


def train_and_save(cfg: TrainConfig, split: DataSplit, out_dir: Path, progress: bool = True,
                   hook: EpochHook | None = None) -> tuple[TrainResult, Path]:
    """Train and publish `out_dir` atomically: a run killed half-way leaves no partial model."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as tmp:
        result = train(cfg, split, examples_dir=tmp / "examples", progress=progress, hook=hook)
        save_networks(result.networks, tmp)
        write_json_atomic(tmp / "model.json", model_record(result, split))
    return result, out_dir


@dataclass
class StoredModel:
    path: Path
    networks: Networks
    record: dict[str, Any]

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.parse(self.record["config"])

    @property
    def data_config(self) -> DataConfig:
        return DataConfig.parse(self.record["data_config"])

    @property
    def epsilon(self) -> float:
        return float(self.record["privacy"]["epsilon"])


def load_model(path: str | Path) -> StoredModel:
    """Rebuild the networks from `model.json` and load their weights, with one clear sentence on failure."""
    path = Path(path)
    meta = path / "model.json"
    if not meta.is_file():
        raise UserError(f"model directory {str(path)!r} has no model.json; pass a directory written by "
                        f"'mnist-etc train'.")
    try:
        record = json.loads(meta.read_text())
        cfg = TrainConfig.parse(record["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{str(meta)!r} is not a valid model record ({type(exc).__name__}: {exc}).") from None
    nets = Networks.build(cfg.hid_dim)
    for part, filename in WEIGHT_FILES.items():
        wpath = path / filename
        if not wpath.is_file():
            raise UserError(f"model directory {str(path)!r} lacks {filename}; it is incomplete or not a "
                            f"mnist-etc model.")
        try:
            getattr(nets, part).load_weights(str(wpath))
        except Exception as exc:  # h5py and Keras raise several kinds for a mismatch or corrupt file
            raise UserError(f"weights {str(wpath)!r} do not fit a {part} with hid_dim {cfg.hid_dim} "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}).") from None
    return StoredModel(path, nets, record)
