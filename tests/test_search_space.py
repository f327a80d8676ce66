"""Search-space YAML: the shipped files load, and each kind of mistake gets one clear sentence."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mnist_etc.errors import UserError
from mnist_etc.sweep.space import load_search_space, parse_search_space

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
study: ok
sampler: {name: tpe, seed: 0}
trials: 4
parallelism: 2
params:
  hid_dim: {type: int, low: 8, high: 32, log: true}
  ae_noise_multiplier: {type: float, low: 0.0, high: 1.0, step: 0.5}
fixed: {ae_epochs: 1, clf_epochs: 2}
attack: {victims: 3, n_iter: 8}
data: {train_size: 300}
winner: {max_leakage: 0.5, max_epsilon: 10, fallback: lowest_leakage}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("name", ["default", "smoke", "audit"])
def test_shipped_spaces_load(name):
    space = load_search_space(ROOT / "search_spaces" / f"{name}.yaml")
    assert space.study == name
    assert space.params and space.trials >= 1
    space.distributions()  # builds Optuna distributions


def test_good_space_and_overrides(tmp_path):
    space = load_search_space(write(tmp_path, GOOD))
    assert space.train_config({"hid_dim": 16, "ae_noise_multiplier": 0.5}).hid_dim == 16
    assert space.params["ae_noise_multiplier"].grid_values() == [0.0, 0.5, 1.0]
    over = space.with_overrides(study="other", trials=9, parallelism=3)
    assert (over.study, over.trials, over.parallelism) == ("other", 9, 3)
    assert over.fingerprint() == space.fingerprint()  # overrides do not change what trials depend on


def test_scientific_notation_reads_as_float(tmp_path):
    space = load_search_space(write(tmp_path, GOOD.replace("fixed: {", "fixed: {ae_learning_rate: 1e-3, ")))
    assert space.fixed["ae_learning_rate"] == pytest.approx(1e-3)


HID_LINE = "hid_dim: {type: int, low: 8, high: 32, log: true}"
# name: (replacements applied to GOOD, a phrase the one-sentence error must contain)
BAD_CASES = {
    "unknown top-level key": ([("trials: 4", "trials: 4\nepochs: 3")], "unknown key 'epochs'; accepted: study, description, sampler"),
    "unknown param key": ([("log: true}", "log: true, scale: 2}")], "params.hid_dim: unknown key 'scale'; accepted: type, low, high, step, log"),
    "unknown training setting": ([("hid_dim: {", "hidden: {")], "'hidden' is not a training setting"),
    "unknown fixed setting": ([("fixed: {", "fixed: {lr: 1, ")], "unknown training setting(s) lr"),
    "unknown attack setting": ([("n_iter: 8}", "n_iter: 8, speed: 2}")], "attack: unknown key 'speed'; accepted: attack, public_data"),
    "unknown data setting": ([("train_size: 300}", "train_size: 300, size: 3}")],
                             "data: unknown key 'size'; accepted: data, val_fraction"),
    "unknown sampler": ([("name: tpe", "name: cmaes")], "sampler.name must be one of tpe, nsga2, random, grid, got 'cmaes'"),
    "sampler option of another sampler": ([("seed: 0}", "seed: 0, options: {population_size: 4}}")],
                                          "sampler.options: unknown key 'population_size'; accepted: n_startup_trials"),
    "bad sampler option value": ([("seed: 0}", "seed: 0, options: {n_startup_trials: -1}}")],
                                 "sampler.options.n_startup_trials must be an integer >= 0, got -1"),
    "inverted int range": ([("low: 8, high: 32", "low: 32, high: 8")], "inverted range"),
    "inverted float range": ([("low: 0.0, high: 1.0", "low: 1.0, high: 0.0")], "inverted range"),
    "empty range": ([("low: 8, high: 32", "low: 8, high: 8")], "empty range"),
    "empty choices": ([(HID_LINE, "hid_dim: {type: categorical, choices: []}")], "choices must be a non-empty list"),
    "single choice": ([(HID_LINE, "hid_dim: {type: categorical, choices: [8]}")], "single choice"),
    "repeated choices": ([(HID_LINE, "hid_dim: {type: categorical, choices: [8, 8]}")], "repeat a value"),
    "unknown param type": ([("type: int", "type: integer")], "type must be one of int, float, categorical"),
    "log with step": ([("step: 0.5}", "step: 0.5, log: true}")], "log and step 0.5 conflict"),
    "log with low 0": ([("low: 0.0, high: 1.0, step: 0.5}", "low: 0.0, high: 1.0, log: true}")], "needs low > 0"),
    "step not dividing range": ([("step: 0.5}", "step: 0.3}")], "not a multiple of step"),
    "searched and fixed": ([("fixed: {", "fixed: {hid_dim: 8, ")], "both searched (params) and fixed"),
    "invalid corner": ([(HID_LINE, "hid_dim: {type: int, low: 1, high: 32}")], "hid_dim must be an integer in 2..256"),
    "microbatches conflict with batch sizes": ([("fixed: {", "fixed: {microbatches: 7, ")],
                                               "microbatches must divide batch_size"),
    "grid with continuous float": ([("name: tpe", "name: grid"), ("step: 0.5}", "log: false}")],
                                   "cannot enumerate float parameter(s) ae_noise_multiplier"),
    "grid smaller than trials": ([("name: tpe", "name: grid"), ("trials: 4", "trials: 30"),
                                  (HID_LINE, "hid_dim: {type: categorical, choices: [8, 16]}")],
                                 "30 trials exceed the 6 points of the grid"),
    "nsga2 population above trials": ([("name: tpe, seed: 0}", "name: nsga2, options: {population_size: 8}}")],
                                      "population_size 8 exceeds the 4 trials"),
    "bad trials": ([("trials: 4", "trials: 0")], "trials must be an integer >= 1, got 0"),
    "bad parallelism": ([("parallelism: 2", "parallelism: two")], "parallelism must be an integer >= 1, got 'two'"),
    "bad study name": ([("study: ok", "study: ../etc")], "study name '../etc' is not accepted"),
    "unknown winner key": ([("fallback: lowest_leakage}", "fallback: lowest_leakage, min_accuracy: 0.9}")],
                           "winner: unknown key 'min_accuracy'; accepted: max_leakage, max_epsilon, fallback"),
    "unknown fallback": ([("fallback: lowest_leakage", "fallback: random")], "winner.fallback must be one of lowest_leakage, highest_accuracy, none, got 'random'"),
    "bad epsilon bound": ([("max_epsilon: 10", "max_epsilon: -1")], "winner.max_epsilon must be a finite number > 0 or null, got -1"),
    "unknown objective metric": ([("trials: 4", "trials: 4\nobjectives: {leakage: mse}")], "objectives.leakage must be one of excess_cosine, excess_cosine_high"),
    "duplicate key": ([("trials: 4", "trials: 4\ntrials: 5")], "duplicate key 'trials'"),
    "not yaml": ([("params:", "params: [")], "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_yaml_gets_one_sentence(tmp_path, case):
    replacements, phrase = BAD_CASES[case]
    text = GOOD
    for old, new in replacements:
        assert old in text, (case, old)
        text = text.replace(old, new)
    with pytest.raises(UserError) as err:
        load_search_space(write(tmp_path, text))
    message = str(err.value)
    assert phrase in message, message
    assert "\n" not in message and message.endswith("."), message
    assert str(tmp_path / "space.yaml") in message  # names the file


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_search_space(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="an empty file"):
        load_search_space(write(tmp_path, ""))
    with pytest.raises(UserError, match="at least one training setting"):
        parse_search_space({"study": "x"})


def test_bad_overrides(tmp_path):
    space = load_search_space(write(tmp_path, GOOD))
    with pytest.raises(UserError, match="--trials must be an integer >= 1"):
        space.with_overrides(trials=0)
    with pytest.raises(UserError, match="--study name 'a/b'"):
        space.with_overrides(study="a/b")


def test_cli_rejects_bad_yaml_before_any_work(tmp_path, capsys):
    from mnist_etc_cli.main import main

    path = write(tmp_path, GOOD.replace("name: tpe", "name: bayes"))
    assert main(["sweep", "--space", str(path), "--artifacts", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert "sampler.name must be one of tpe, nsga2, random, grid, got 'bayes'" in err and err.count("\n") == 1
    assert not (tmp_path / "art").exists()  # nothing written
