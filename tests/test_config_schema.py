"""The typed configuration's edges: JSON Schemas generated from the models and current, every shipped YAML
naming its schema and valid under it, and nested mistakes named by their key path in one sentence."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from mnist_etc.config import parse_yaml
from mnist_etc.config.schema import SCHEMAS, render, stale
from mnist_etc.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"


def test_schema_files_are_what_the_models_give():
    assert stale(SPACES / "schema") == [], "run `make schemas`"
    for name, target in SCHEMAS.items():
        assert json.loads((SPACES / "schema" / name).read_text()) == json.loads(render(target))


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_names_its_schema_and_is_valid_under_it(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=schema/"), first
    schema = json.loads((SPACES / first.split("$schema=", 1)[1]).read_text())
    jsonschema.validate(parse_yaml(path.read_text(), str(path)), schema)   # what an editor checks


def test_the_schema_refuses_what_the_loader_refuses():
    schema = json.loads((SPACES / "schema" / "search-space.json").read_text())
    good = {"params": {"hid_dim": {"type": "int", "low": 8, "high": 16}}, "sampler": "tpe"}
    jsonschema.validate(good, schema)
    for bad in ({**good, "epochs": 3}, {**good, "trials": 0},
                {**good, "params": {"hidden": {"type": "int", "low": 8, "high": 16}}},
                {**good, "attack": {"victims": 0}}, {**good, "sampler": "cmaes"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


NESTED = [
    ("attack:\n  n_samples: 1\n", "attack.n_samples must be an integer >= 2, got 1."),
    ("data:\n  val_fraction: 1.5\n", "data.val_fraction must be a number strictly between 0 and 1, got 1.5."),
    ("params:\n  hid_dim: {type: int, low: 8, high: 16, step: 0}\n",
     "params.hid_dim.step must be an integer >= 1 or null, got 0."),
    ("sampler: {name: nsga2, options: {crossover_prob: 2}}\n",
     "sampler.options.crossover_prob must be a number in [0, 1], got 2."),
    ("winner: {fallback: first}\n", "winner.fallback must be one of lowest_leakage, highest_accuracy, none, got 'first'."),
    ("attack: {n_best: 300, n_samples: 256}\n", "attack.n_best must not exceed n_samples 256, got 300."),
    ("trials: 2.0\n", "trials must be an integer >= 1, got 2.0."),
    ("trials: '3'\n", "trials must be an integer >= 1, got '3'."),
]


@pytest.mark.parametrize("text, sentence", NESTED)
def test_nested_mistakes_name_their_key_path(tmp_path, text, sentence):
    from mnist_etc.sweep.space import load_search_space

    body = "params:\n  hid_dim: {type: int, low: 8, high: 16}\n"
    path = tmp_path / "s.yaml"
    path.write_text(text if text.startswith("params") else body + text)
    with pytest.raises(UserError) as err:
        load_search_space(path)
    assert str(err.value) == f"{path}: {sentence}"


@pytest.mark.parametrize("argv, phrase", [
    (["audit", "--canaries", "1"], "--canaries must be an integer in 2..10000000, got 1."),
    (["audit", "--victims", "10"], "--victims must be at least 50 per group"),
    (["pipeline", "--audit-victims", "10"], "--audit-victims must be at least 50 per group"),
    (["pipeline", "--space", "search_spaces/nope.yaml"], "search space 'search_spaces/nope.yaml' does not exist"),
    (["sweep", "--space", "search_spaces/smoke.yaml", "--trials", "0"], "--trials must be an integer >= 1, got 0."),
    (["train", "--hid-dim", "300"], "--hid-dim must be an integer in 2..256, got 300."),
    (["demo", "--victims", "0"], "--victims must be an integer >= 1, got 0."),
    (["export", "--opset", "9"], "opset must be in 13..18, got 9."),
    (["benchmark", "--max-trials", "2"], "--max-trials must be an integer >= 3"),
    (["benchmark", "--grid", "search_spaces/smoke.yaml"], "search_spaces/smoke.yaml: fixed: unknown key"),
])
def test_every_verb_refuses_a_bad_value_at_once(tmp_path, argv, phrase):
    """Before Prefect, a server or training starts: one sentence, exit 2, no traceback, nothing written."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mnist_etc_cli.main", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    seconds = time.perf_counter() - t0
    assert done.returncode == 2, done.stderr
    assert phrase in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert seconds < 5, f"{seconds:.1f} s: something heavy ran before the check"
