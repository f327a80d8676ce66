"""The typed Triton config, config.pbtxt generation and the versioned model repository (no server)."""
from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as pb

from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import (ONNXRUNTIME, PYTHON, TritonModelConfig, parse_pbtxt, to_json,
                                           to_pbtxt)
from mnist_etc.triton.repository import (add_version, export_record, list_models, read_config, served_name,
                                         validate_model_name, versions)
from tests.onnx_models import tiny_onnx


@pytest.mark.parametrize("values, fragment", [
    ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1"),
    ({"max_batch_size": 8, "preferred_batch_size": [4, 16]}, "preferred_batch_size must be an integer in 1..8"),
    ({"preferred_batch_size": [4, 4]}, "must not repeat"),
    ({"instance_count": 0}, "instance_count must be an integer >= 1"),
    ({"max_queue_delay_microseconds": -1}, "max_queue_delay_microseconds must be an integer >= 0"),
    ({"instance_kind": "KIND_TPU"}, "instance_kind must be one of KIND_CPU, KIND_GPU"),
    ({"gpus": [0]}, "need instance_kind KIND_GPU"),
    ({"dynamic_batching": False, "preferred_batch_size": [8]}, "need dynamic_batching: true"),
    ({"dynamic_batching": "yes"}, "dynamic_batching must be true or false"),
    ({"version_policy": "newest"}, "version_policy must be one of latest, all, got 'newest'"),
    ({"preferred_batch_size": [8, 0]}, "preferred_batch_size[1] must be an integer >= 1, got 0."),
    ({"gpus": [-1], "instance_kind": "KIND_GPU"}, "gpus[0] must be an integer >= 0, got -1."),
    ({"max_batch_size": "64"}, "max_batch_size must be an integer >= 1, got '64'."),
    ({"max_batch_sise": 8}, "unknown key 'max_batch_sise'; accepted: max_batch_size, dynamic_batching"),
])
def test_config_rejects_bad_values_with_one_sentence(values, fragment):
    with pytest.raises(UserError, match=None) as err:
        TritonModelConfig.from_mapping(values)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_config_from_yaml_lists_is_hashable_and_equal():
    cfg = TritonModelConfig.from_mapping({"preferred_batch_size": [8, 16], "instance_count": 2})
    assert cfg.preferred_batch_size == (8, 16) and hash(cfg)
    assert cfg == TritonModelConfig(preferred_batch_size=(8, 16), instance_count=2)


@pytest.mark.parametrize("backend", [PYTHON, ONNXRUNTIME])
def test_pbtxt_and_override_json_parse_with_tritons_schema(backend):
    cfg = TritonModelConfig(max_batch_size=32, max_queue_delay_microseconds=250, preferred_batch_size=(8, 16),
                            instance_count=2, intra_op_threads=1, version_policy="all")
    mc = parse_pbtxt(to_pbtxt("m", backend, cfg))
    assert mc.name == "m" and mc.max_batch_size == 32
    assert (mc.backend, mc.platform) == (("python", "") if backend == PYTHON else ("", "onnxruntime_onnx"))
    inputs = [(i.name, list(i.dims), pb.DataType.Name(i.data_type)) for i in mc.input]
    assert inputs == [("input", [28, 28, 1], "TYPE_FP32")]
    assert [(o.name, list(o.dims)) for o in mc.output] == [("logits", [10])]
    assert TritonModelConfig.from_proto(mc) == cfg
    from_json = json_format.Parse(to_json("m", backend, cfg), pb.ModelConfig())
    assert from_json == mc


def test_gpu_config_renders_kind_gpu():
    mc = parse_pbtxt(to_pbtxt("m", ONNXRUNTIME, TritonModelConfig(instance_kind="KIND_GPU", gpus=(0, 1))))
    assert pb.ModelInstanceGroup.Kind.Name(mc.instance_group[0].kind) == "KIND_GPU"
    assert list(mc.instance_group[0].gpus) == [0, 1]


def test_normalized_matches_tritons_completion():
    assert TritonModelConfig(max_batch_size=16).normalized().preferred_batch_size == (16,)
    assert TritonModelConfig(preferred_batch_size=(4,)).normalized().preferred_batch_size == (4,)


def test_bad_pbtxt_is_one_sentence():
    with pytest.raises(UserError, match="does not parse as a Triton ModelConfig"):
        parse_pbtxt("max_batch_size: lots")


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "", "x" * 65, "sp ace", "dot.name", "/abs", None, "a\\b"])
def test_model_names_with_path_tricks_are_refused(name):
    with pytest.raises(UserError, match="is not accepted"):
        validate_model_name(name)


def test_served_names():
    assert validate_model_name("mnist_etc-2") == "mnist_etc-2"
    assert served_name("m", PYTHON) == "m" and served_name("m", ONNXRUNTIME) == "m_onnx"


def test_each_export_adds_a_version_and_keeps_earlier_ones(tmp_path):
    repo = tmp_path / "repo"
    onnx_file = tiny_onnx(tmp_path / "model.onnx")
    cfg = TritonModelConfig(instance_count=2)
    first = add_version(repo, "digits", onnx_file, {"source": {"config": {"seed": 3}}}, cfg)
    second = add_version(repo, "digits", onnx_file, {"source": {"config": {"seed": 4}}})
    assert (first.version, second.version) == (1, 2)
    assert versions(repo, "digits") == [1, 2] and versions(repo, "digits_onnx") == [1, 2]
    assert sorted(p.name for p in (repo / "digits" / "1").iterdir()) == ["export.json", "model.onnx", "model.py"]
    assert sorted(p.name for p in (repo / "digits_onnx" / "2").iterdir()) == ["export.json", "model.onnx"]
    assert list_models(repo) == {"digits": PYTHON, "digits_onnx": ONNXRUNTIME}
    assert read_config(repo, "digits") == TritonModelConfig()   # the config follows the latest export
    version, record = export_record(repo, "digits")
    assert version == 2 and record["source"]["config"]["seed"] == 4
    assert record["triton"] == {"model": "digits", "backend": "python", "version": 2,
                                "config": TritonModelConfig().to_dict()}
    assert json.loads((repo / "digits" / "1" / "export.json").read_text())["source"]["config"]["seed"] == 3
    assert not [p for p in repo.rglob(".*")], "no staging directories left behind"


def test_one_backend_only(tmp_path):
    add_version(tmp_path / "repo", "only_py", tiny_onnx(tmp_path / "m.onnx"), {}, backends=(PYTHON,))
    assert list_models(tmp_path / "repo") == {"only_py": PYTHON}


def test_missing_onnx_publishes_nothing(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        add_version(tmp_path / "repo", "m", tmp_path / "missing.onnx", {})
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").rglob("*"))


def test_export_record_errors(tmp_path):
    with pytest.raises(UserError, match="has no versions"):
        export_record(tmp_path, "m")
    add_version(tmp_path, "m", tiny_onnx(tmp_path / "m.onnx"), {})
    with pytest.raises(UserError, match="has no version 7 .* available: 1"):
        export_record(tmp_path, "m", 7)
    with pytest.raises(UserError, match="is not accepted"):
        export_record(tmp_path, "../m")


def _pbtxt_without(text: str, field: str) -> str:
    """The generated config with one top-level field (a line, or a block up to its closing brace) removed."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith(field):
            skipping = line.rstrip().endswith("{")
            continue
        if skipping:
            skipping = line != "}"
            continue
        out.append(line)
    return "\n".join(out) + "\n"


GOOD = to_pbtxt("digits", PYTHON, TritonModelConfig())


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe garbage", "is not text (byte 0xff at offset 0)"),
    (GOOD[: GOOD.index("input {") + 20].encode(), "does not parse as a Triton ModelConfig (11:9 : "),
    (GOOD.replace('name: "digits"', 'name: "other"').encode(), "names model 'other', not 'digits'"),
    (_pbtxt_without(GOOD, "backend").encode(), 'sets neither backend "python" nor platform "onnxruntime_onnx"'),
    (_pbtxt_without(GOOD, "output").encode(), "does not declare the classifier's one output 'logits'"),
    (GOOD.replace("dims: 28\n  dims: 1", "dims: 2\n  dims: 1").encode(), "one input 'input' (FP32, dims [28, 28, 1])"),
    (b"# only the header survived\n", 'sets neither backend "python" nor platform'),
], ids=["binary", "cut mid-string", "other name", "no backend", "no output", "wrong dims", "comments only"])
def test_a_corrupt_config_names_the_file_and_the_model(tmp_path, content, problem):
    add_version(tmp_path, "digits", tiny_onnx(tmp_path / "m.onnx"), {}, backends=(PYTHON,))
    path = tmp_path / "digits" / "config.pbtxt"
    path.write_bytes(content)
    for read in (list_models, lambda repo: read_config(repo, "digits")):
        with pytest.raises(UserError) as err:
            read(tmp_path)
        text = str(err.value)
        assert text.startswith(f"the config of model 'digits' is corrupt: {path} ") and problem in text, text
        assert "\n" not in text


@pytest.mark.parametrize("backend", [PYTHON, ONNXRUNTIME])
def test_generated_configs_pass_the_corruption_check(backend):
    from mnist_etc.triton.model_config import served_config_problem

    cfg = TritonModelConfig(max_batch_size=8, preferred_batch_size=(4,), instance_count=2, version_policy="all")
    assert served_config_problem(parse_pbtxt(to_pbtxt("m", backend, cfg)), "m") is None
