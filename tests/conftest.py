"""Shared fixtures: tiny real data and a tiny trained model (seconds, not minutes)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mnist_etc.config import DataConfig, TrainConfig  # noqa: E402

TINY_DATA = DataConfig(train_size=1500)
TINY_TRAIN = TrainConfig(hid_dim=16, ae_epochs=5, clf_epochs=10, batch_size=32)


@pytest.fixture(scope="session")
def tiny_split():
    from mnist_etc.data import load_split

    return load_split(TINY_DATA)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_split) -> Path:
    """A trained (non-private) model directory, written by the real training code."""
    from mnist_etc.model_store import train_and_save

    out = tmp_path_factory.mktemp("models") / "tiny"
    train_and_save(TINY_TRAIN, tiny_split, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from mnist_etc.model_store import load_model

    return load_model(tiny_model_dir)
