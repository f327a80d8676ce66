"""The command line as a user meets it: help, one-sentence errors, exit codes, no partial artifacts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_etc_cli.main import main

VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("argv, message", [
    (["--hid-dim", "300"], "--hid-dim must be an integer in 2..256, got 300."),
    (["--noise-multiplier", "-0.5"], "--noise-multiplier must be a finite number >= 0, got -0.5."),
    (["--l2-norm-clip", "0"], "--l2-norm-clip must be a finite number > 0, got 0.0."),
    (["--microbatches", "7"], "--microbatches must divide batch_size 64, got 7."),
    (["--data", "no/such/mnist.npz"], "data file 'no/such/mnist.npz' does not exist"),
])
def test_bad_train_input_gets_one_sentence_and_no_artifact(argv, message, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_corrupt_data_file_is_refused(tmp_path, capsys):
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"\x00" * 100)
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "is not a readable .npz archive" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_attack_on_mismatched_weights_is_refused(tiny_model_dir, tmp_path, capsys):
    import shutil

    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_model_dir, wrong)
    record = json.loads((wrong / "model.json").read_text())
    record["config"]["hid_dim"] = 64
    (wrong / "model.json").write_text(json.dumps(record))
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(wrong), "--out", str(out), "--quiet"]) == 2
    assert "with hid_dim 64" in capsys.readouterr().err
    assert not out.exists()


def test_attack_writes_report(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(tiny_model_dir), "--victims", "3", "--n-iter", "4",
                 "--n-samples", "32", "--n-best", "8", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "direct_cosine" in printed and "label-only baseline" in printed and "excess over label-only" in printed
    record = json.loads((out / "attack.json").read_text())
    assert record["config"]["victims"] == 3 and record["model"] == str(tiny_model_dir)
    assert record["attack"] == "public-prior"


@pytest.mark.parametrize("argv, sentence", [
    (["--attack", "magic"], "--attack must be one of public-prior, own-decoder, got 'magic'."),
    (["--victims", "0"], "--victims must be an integer >= 1, got 0."),
    (["--public-data", "/nonexistent.npz"], "is neither 'held-out' nor an existing .npz file"),
])
def test_bad_attack_options_get_one_sentence_and_no_artifact(tiny_model_dir, tmp_path, capsys, argv, sentence):
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(tiny_model_dir), *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert sentence in err and "Traceback" not in err
    assert not out.exists()


def test_help_is_quick_and_lists_verbs():
    done = subprocess.run([str(VENV_BIN / "mnist-etc"), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for verb in ("train", "attack", "demo"):
        assert verb in done.stdout
    sub = subprocess.run([str(VENV_BIN / "mnist-etc"), "train", "--help"], capture_output=True, text=True,
                         timeout=60)
    for opt in ("--hid-dim", "--ae-epochs", "--clf-epochs", "--noise-multiplier", "--l2-norm-clip", "--data",
                "--seed", "--microbatches"):
        assert opt in sub.stdout


@pytest.mark.slow
def test_train_from_the_console_script_keeps_tensorflow_noise_away(tmp_path):
    out = tmp_path / "m"
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([str(VENV_BIN / "mnist-etc"), "train", "--hid-dim", "8", "--ae-epochs", "1",
                           "--clf-epochs", "1", "--train-size", "300", "--noise-multiplier", "1.0",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "privacy: (" in done.stdout and "-DP for the whole model" in done.stdout
    for noise in ("oneDNN", "TensorRT", "cuda", "CUDA", "absl", "WARNING"):
        assert noise not in done.stderr, done.stderr
    assert "autoencoder epochs" in done.stderr  # the progress bar is there
    assert json.loads((out / "model.json").read_text())["config"]["ae_noise_multiplier"] == 1.0


@pytest.mark.parametrize("argv, sentence", [
    (["audit", "--victims", "10"], "--victims must be at least 50 per group"),
    (["audit", "--leakage-bound", "5"], "--leakage-bound must be a number in [-1, 2], got 5.0."),
    (["audit", "--max-epsilon", "-1"], "--max-epsilon must be a finite number >= 0, got -1.0."),
    (["audit", "--inconclusive", "maybe"], "argument --inconclusive: invalid choice: 'maybe' (choose from 'pass', 'fail')"),
    (["pipeline", "--inconclusive", "yes"], "argument --inconclusive: invalid choice: 'yes' (choose from 'pass', 'fail')"),
    (["pipeline", "--audit-victims", "3"], "--audit-victims must be at least 50 per group"),
    (["audit", "--canaries", "1"], "--canaries must be an integer in 2..10000000, got 1."),
    (["audit", "--canary-confidence", "1"], "--canary-confidence must be a number strictly between 0 and 1, got 1.0."),
    (["audit-dp", "--canaries", "0"], "--canaries must be an integer in 2..10000000, got 0."),
    (["audit-dp", "--inclusion", "0"], "--inclusion must be a number strictly between 0 and 1, got 0.0."),
    (["audit-dp", "--confidence", "1.2"], "--confidence must be a number strictly between 0 and 1, got 1.2."),
])
def test_bad_audit_policy_is_refused_before_any_flow_starts(argv, sentence):
    done = subprocess.run([str(VENV_BIN / "mnist-etc"), *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert sentence in done.stderr and "Traceback" not in done.stderr
    assert "prefect" not in (done.stdout + done.stderr).lower()  # refused before any flow run started



@pytest.mark.slow
def test_audit_dp_prints_the_bound_beside_the_accounted_epsilon(tiny_model_dir, tmp_path):
    done = subprocess.run([str(VENV_BIN / "mnist-etc"), "audit-dp", "--model", str(tiny_model_dir), "--canaries",
                           "200", "--no-progress", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]   # non-private: epsilon = inf, nothing to contradict
    assert "epsilon_lb " in done.stdout and "accounted epsilon inf" in done.stdout
    [out] = tmp_path.iterdir()
    rec = json.loads((out / "canary_audit.json").read_text())
    assert rec["canaries"] == 200 and rec["consistent"] and (out / "scores.png").is_file()
    assert "epsilon_lb" in (out / "report.md").read_text()
