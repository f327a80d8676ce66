"""Reconstruction attacks behind one interface (`base.Attack`), their registry and their settings (`config`).

A new attack is one module with an `Attack` subclass plus one line in `REGISTRY`; the settings' choices, the
CLI, the sweep, the audit, the reports and MLflow read the names from here. Modules are imported only when an
attack is used, so reading the names costs no TensorFlow import.

    >>> from mnist_etc.audit.attacks import get
    >>> get("public-prior").threat_model
"""
from __future__ import annotations

import importlib
from typing import NamedTuple


class Registered(NamedTuple):
    home: str          # "module:Class"
    summary: str       # who the attacker is, in a few words (the option's help lists it)


REGISTRY: dict[str, Registered] = {
    "public-prior": Registered("mnist_etc.audit.attacks.public_prior:PublicPriorAttack",
                               "an outsider with its own decoder and prior fitted on public digits"),
    "own-decoder": Registered("mnist_etc.audit.attacks.own_decoder:OwnDecoderAttack",
                              "an insider with the target's decoder"),
}
DEFAULT_ATTACK = "public-prior"


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def described() -> str:
    """The registry in words: `'public-prior' (an outsider ...) or 'own-decoder' (an insider ...)`."""
    return " or ".join(f"{name!r} ({entry.summary})" for name, entry in REGISTRY.items())


def get(name: str) -> type:
    """The attack class registered under `name` (names are checked when the config is built)."""
    module, _, cls = REGISTRY[name].home.partition(":")
    return getattr(importlib.import_module(module), cls)
