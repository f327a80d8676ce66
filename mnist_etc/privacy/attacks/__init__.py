"""Reconstruction attacks behind one interface (`base.Attack`) and their registry.

A new attack is one module with an `Attack` subclass plus one line in `REGISTRY`; the CLI, the sweep, the
audit, the reports and MLflow read the names from here. Modules are imported only when an attack is used,
so reading the names costs no TensorFlow import.

    >>> from mnist_etc.privacy.attacks import get
    >>> get("public-prior").threat_model
"""
from __future__ import annotations

import importlib

REGISTRY: dict[str, str] = {
    "public-prior": "mnist_etc.privacy.attacks.public_prior:PublicPriorAttack",
    "own-decoder": "mnist_etc.privacy.attacks.own_decoder:OwnDecoderAttack",
}
DEFAULT_ATTACK = "public-prior"


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> type:
    """The attack class registered under `name` (names are checked when the config is built)."""
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)
