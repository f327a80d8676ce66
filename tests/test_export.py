"""ONNX export: parity with TensorFlow, the export record, refusal to publish a failing export, sources."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mnist_etc.errors import UserError
from mnist_etc.export_source import resolve_source, source_from_winner
from mnist_etc.triton.repository import versions


@pytest.fixture(scope="module")
def exported(tiny_model, tiny_split, tmp_path_factory):
    from mnist_etc.export import export_onnx

    return export_onnx(tiny_model, tmp_path_factory.mktemp("export") / "out", tiny_split,
                       source={"kind": "model_dir"})


@pytest.mark.slow
def test_export_writes_a_dynamic_batch_onnx_model_equal_to_tensorflow(exported, tiny_model, tiny_split):
    import onnx

    from mnist_etc.export import ort_session, tf_logits

    proto = onnx.load(exported.onnx_path)
    io = {t.name: [d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]
          for t in [*proto.graph.input, *proto.graph.output]}
    assert io == {"input": ["batch", 28, 28, 1], "logits": ["batch", 10]}
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    session = ort_session(exported.onnx_path)
    model = tiny_model.networks.full_model()
    for n in (1, 5, 64):   # any batch size: the batch dimension is dynamic
        x = tiny_split.x_test[:n]
        ort_out = session.run(["logits"], {"input": x})[0]
        assert ort_out.shape == (n, 10)
        np.testing.assert_allclose(ort_out, tf_logits(model, x), atol=1e-4)


@pytest.mark.slow
def test_export_record_carries_source_config_seed_and_parity(exported, tiny_model):
    rec = json.loads((exported.directory / "export.json").read_text())
    assert rec == json.loads(json.dumps(exported.record))
    assert rec["source"]["config"] == tiny_model.record["config"] and "seed" in rec["source"]["config"]
    assert rec["source"]["data_config"] == tiny_model.record["data_config"]
    assert rec["source"]["kind"] == "model_dir"
    assert rec["parity"]["n_images"] == 256 and rec["parity"]["passed"]
    assert rec["parity"]["max_abs_diff"] <= 1e-4 and rec["parity"]["class_mismatches"] == 0
    assert rec["test_accuracy"]["tensorflow"] == rec["test_accuracy"]["onnxruntime"]
    assert rec["test_accuracy"]["tensorflow"] == pytest.approx(tiny_model.record["metrics"]["test_accuracy"])
    import onnx

    props = {p.key: p.value for p in onnx.load(exported.onnx_path).metadata_props}
    assert json.loads(props["mnist_etc.config"]) == tiny_model.record["config"]


@pytest.mark.slow
def test_parity_detects_a_different_model(exported, tiny_split):
    from mnist_etc.export import measure_parity, ort_session
    from mnist_etc.models import Networks

    other = Networks.build(16).full_model()   # untrained weights: what a broken conversion would compute
    report = measure_parity(ort_session(exported.onnx_path), other, tiny_split.x_test[:256])
    assert not report.passed and report.max_abs_diff > 1e-4 and report.class_mismatches > 0


@pytest.mark.slow
def test_failing_parity_publishes_nothing(tiny_model, tiny_split, tmp_path):
    from mnist_etc.export import ParityError, export_onnx, export_to_repository

    # atol 0 demands bit-identical logits, which ONNX Runtime's kernels do not give TensorFlow's.
    with pytest.raises(ParityError, match=r"max absolute logit difference .* \(accepted <= 0\)") as err:
        export_to_repository(tiny_model, tmp_path / "repo", "m", atol=0.0)
    assert "nothing was exported" in str(err.value)
    assert versions(tmp_path / "repo", "m") == [] and versions(tmp_path / "repo", "m_onnx") == []
    with pytest.raises(ParityError):
        export_onnx(tiny_model, tmp_path / "out", tiny_split, atol=0.0)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.slow
def test_export_to_repository_publishes_both_backends(tiny_model, tmp_path):
    from mnist_etc.export import export_to_repository
    from mnist_etc.triton.model_config import TritonModelConfig
    from mnist_etc.triton.repository import read_config

    cfg = TritonModelConfig(max_batch_size=16, instance_count=2)
    result, published = export_to_repository(tiny_model, tmp_path / "repo", "digits", cfg)
    assert published.version == 1 and result.directory == tmp_path / "repo" / "digits" / "1"
    assert read_config(tmp_path / "repo", "digits") == cfg == read_config(tmp_path / "repo", "digits_onnx")
    a = (tmp_path / "repo" / "digits" / "1" / "model.onnx").read_bytes()
    assert a == (tmp_path / "repo" / "digits_onnx" / "1" / "model.onnx").read_bytes()


@pytest.mark.slow
def test_cli_export_adds_versions(tiny_model_dir, tmp_path, capsys):
    from mnist_etc_cli.main import main

    args = ["export", "--model", str(tiny_model_dir), "--repository", str(tmp_path), "--name", "cli",
            "--max-batch-size", "8", "--preferred-batch-size", "4,8", "--backends", "python"]
    assert main(args) == 0 and main(args) == 0
    assert versions(tmp_path, "cli") == [1, 2] and not (tmp_path / "cli_onnx").exists()
    assert "classes identical" in capsys.readouterr().out
    assert main(args[:-2] + ["--backends", "tensorrt"]) == 2
    assert main(args + ["--max-batch-size", "2"]) == 2     # preferred 4,8 > max 2: refused before export
    err = capsys.readouterr().err
    assert "--backends must list python and/or onnxruntime, got 'tensorrt'" in err
    assert "each preferred_batch_size must be an integer in 1..2, got 4" in err
    assert versions(tmp_path, "cli") == [1, 2]


def test_bad_export_arguments_are_refused_before_work(tmp_path):
    from mnist_etc.export import convert_to_onnx, export_to_repository

    with pytest.raises(UserError, match="model name '../x' is not accepted"):
        export_to_repository(None, tmp_path, "../x")
    with pytest.raises(UserError, match="opset must be in 13..18, got 9"):
        convert_to_onnx(None, opset=9)


# -- sources ----------------------------------------------------------------------------------------------

def _fake_model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.json").write_text("{}")
    return path


def test_winner_json_source(tmp_path):
    model = _fake_model_dir(tmp_path / "study" / "trial-3")
    winner = tmp_path / "study" / "winner.json"
    # The shape the sweep writes (mnist_etc.sweep.orchestrator), with a path relative to the winner file.
    winner.write_text(json.dumps({"model_dir": "trial-3", "study": "s", "trial": 3,
                                  "mlflow": {"run_id": "abc", "tracking_uri": "sqlite:///x.db"}}))
    src = source_from_winner(winner)
    assert src.model_dir == model and (src.mlflow_run_id, src.tracking_uri) == ("abc", "sqlite:///x.db")
    assert src.info["kind"] == "sweep_winner" and src.info["trial"] == 3
    winner.write_text(json.dumps({"model": "x"}))
    with pytest.raises(UserError, match="must be JSON holding \"model_dir\""):
        source_from_winner(winner)
    winner.write_text(json.dumps({"model_dir": str(tmp_path / "nowhere")}))
    with pytest.raises(UserError, match="not a trained-model directory"):
        source_from_winner(winner)


def test_default_source_is_the_newest_winner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no sweep winner found"):
        resolve_source()
    for i, study in enumerate(["old", "new"]):
        _fake_model_dir(tmp_path / "artifacts" / "sweeps" / study / "best")
        w = tmp_path / "artifacts" / "sweeps" / study / "winner.json"
        w.write_text(json.dumps({"model_dir": f"artifacts/sweeps/{study}/best"}))
        os.utime(w, (1000 + i, 1000 + i))
    assert resolve_source().model_dir == Path("artifacts/sweeps/new/best")
    with pytest.raises(UserError, match="give one export source, not --model and --winner"):
        resolve_source(model_dir="a", winner="b")
    with pytest.raises(UserError, match="not a trained-model directory"):
        resolve_source(model_dir=tmp_path)


@pytest.mark.slow
def test_mlflow_alias_source_and_onnx_logged_next_to_the_run(exported, tiny_model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from mnist_etc.tracking.export import log_export_to_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment("t", artifact_location=str(tmp_path / "mlartifacts"))
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(tiny_model_dir), "model")
    client.create_registered_model("digits")
    mv = client.create_model_version("digits", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("digits", "champion", mv.version)

    src = resolve_source(mlflow_model="models:/digits@champion", tracking_uri=uri, download_dir=tmp_path / "dl")
    assert src.mlflow_run_id == run.info.run_id and (src.model_dir / "model.json").is_file()
    assert (src.model_dir / "model.json").read_text() == (tiny_model_dir / "model.json").read_text()
    assert log_export_to_mlflow(exported.directory, run.info.run_id, uri) == f"runs:/{run.info.run_id}/onnx"
    logged = sorted(a.path for a in client.list_artifacts(run.info.run_id, "onnx"))
    assert logged == ["onnx/export.json", "onnx/model.onnx"]
    with pytest.raises(UserError, match="MLflow could not resolve 'models:/digits@nope'"):
        resolve_source(mlflow_model="models:/digits@nope", tracking_uri=uri, download_dir=tmp_path / "dl")
    with pytest.raises(UserError, match="is not accepted; use models:/"):
        resolve_source(mlflow_model="digits", tracking_uri=uri)
