"""A real embedded Triton (the tritonserver binary of the nvidia-pytriton wheel) started by a fixture on free
ports, serving the tiny model exported to both generated configs.

The pip-shipped server has no onnxruntime backend. To still load the `platform: "onnxruntime_onnx"` config,
the fixture's backend directory gets a Python-based backend named `onnxruntime` (our own model.py, which
Triton 2.51 picks up as `<backend dir>/onnxruntime/model.py`). That proves Triton parses, normalises and
serves that config and repository layout; it does not exercise NVIDIA's C++ onnxruntime backend itself
(its auto-completion from the ONNX file, its own parameter handling, GPU execution).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import PYTHON, TritonModelConfig, to_json
from mnist_etc.triton.repository import PYTHON_MODEL_SOURCE, add_version
from mnist_etc.triton.runtime_env import perf_analyzer_binary, perf_analyzer_env, prepare_backend_dir
from mnist_etc.triton.server import ServerConfig, ServerError, TritonServer

CFG = TritonModelConfig(max_batch_size=16, max_queue_delay_microseconds=200)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port`, from /proc/net/tcp{,6} (state 0A = LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


@pytest.fixture(scope="module")
def repo(tiny_model, tmp_path_factory):
    from mnist_etc.export import export_to_repository

    repo = tmp_path_factory.mktemp("triton") / "model_repository"
    result, published = export_to_repository(tiny_model, repo, "digits", CFG)
    # Not loaded at start: the explicit-mode test loads it with a config override, as the benchmark will.
    add_version(repo, "spare", result.onnx_path, result.record, CFG, backends=(PYTHON,))
    return repo


@pytest.fixture(scope="module")
def backend_dir(tmp_path_factory):
    path = prepare_backend_dir(tmp_path_factory.mktemp("backends"))
    (path / "onnxruntime").mkdir()
    shutil.copyfile(PYTHON_MODEL_SOURCE, path / "onnxruntime" / "model.py")   # the stand-in, see module doc
    return path


@pytest.fixture(scope="module")
def server(repo, backend_dir, tmp_path_factory):
    cfg = ServerConfig(repo, model_control_mode="explicit", load_models=("digits", "digits_onnx"),
                       log_dir=tmp_path_factory.mktemp("logs"), backend_dir=backend_dir)
    with TritonServer(cfg) as srv:
        pgid = srv.proc.pid
        yield srv
    assert not group_alive(pgid), "server or Python stubs survived stop()"


@pytest.fixture(scope="module")
def grpc_client(server):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(server.grpc_url)


@pytest.mark.slow
def test_listens_on_loopback_only(server):
    for port in server.ports.values():
        # gRPC binds 127.0.0.1 through a dual-stack socket: ::ffff:127.0.0.1 in /proc/net/tcp6.
        loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
        addrs = listening_addresses(port)
        assert addrs and addrs <= loopback, f"port {port} listens on {addrs}, not only 127.0.0.1"


@pytest.mark.slow
@pytest.mark.parametrize("name, field, value", [("digits", "backend", "python"),
                                                 ("digits_onnx", "platform", "onnxruntime_onnx")])
def test_both_generated_configs_loaded_and_read_back(grpc_client, name, field, value):
    loaded = grpc_client.get_model_config(name).config
    assert getattr(loaded, field) == value
    assert TritonModelConfig.from_proto(loaded).normalized() == CFG.normalized()
    assert grpc_client.is_model_ready(name, "1")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "digits_onnx"])
def test_served_logits_equal_onnx_runtime_in_process(server, repo, tiny_split, name):
    from mnist_etc.export import ort_session
    from mnist_etc.triton.client import ClassifierClient

    x = tiny_split.x_test[:5]
    expected = ort_session(repo / name / "1" / "model.onnx").run(["logits"], {"input": x})[0]
    with ClassifierClient(server.grpc_url, name) as client:
        assert client.version == 1 and client.max_batch_size == 16
        np.testing.assert_allclose(client.infer(x), expected, atol=1e-5)
        np.testing.assert_allclose(client.infer(tiny_split.x_test[:40], batch_size=7)[:5], expected, atol=1e-5)


@pytest.mark.slow
def test_test_split_csv_and_accuracy_equal_in_process(server, repo, tiny_split, tmp_path):
    import pandas as pd

    from mnist_etc.inference import infer_with_client
    from mnist_etc.triton.client import ClassifierClient

    with ClassifierClient(server.grpc_url, "digits") as client:
        result = infer_with_client(client, repo, tmp_path)
    assert result.csv_path == tmp_path / "digits_v1.csv"
    df = pd.read_csv(result.csv_path)
    assert list(df.columns) == ["index", "label", "prediction"] + [f"prob_{k}" for k in range(10)]
    assert len(df) == len(tiny_split.y_test) == result.n_images
    assert (df["label"].to_numpy() == tiny_split.y_test).all()
    probs = df[[f"prob_{k}" for k in range(10)]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-4) and (probs.argmax(1) == df["prediction"]).all()
    assert result.accuracy == (df["prediction"] == df["label"]).mean()
    assert result.matches_in_process, (result.accuracy, result.in_process_accuracy)


@pytest.mark.slow
def test_cli_infer_against_running_server(server, repo, tmp_path, capsys):
    from mnist_etc_cli.main import main

    assert main(["infer", "--url", server.grpc_url, "--model", "digits_onnx", "--repository", str(repo),
                 "--out-dir", str(tmp_path), "--batch-size", "16"]) == 0
    assert "equal" in capsys.readouterr().out and (tmp_path / "digits_onnx_v1.csv").is_file()


@pytest.mark.slow
def test_wrong_shapes_get_clear_errors(server):
    from mnist_etc.triton.client import ClassifierClient

    with ClassifierClient(server.grpc_url, "digits") as client:
        with pytest.raises(UserError, match=r"must have shape \[N, 28, 28, 1\] .*got \[2, 28, 28\]"):
            client.infer(np.zeros((2, 28, 28), np.float32))
        with pytest.raises(UserError, match=r"batch size must be an integer in 1..16"):
            client.infer(np.zeros((2, 28, 28, 1), np.float32), batch_size=17)
        # Bypassing the client's check: Triton refuses, and its reason is passed on.
        with pytest.raises(UserError, match=r"refused a request to 'digits' v1: .*unexpected shape for input 'input'"):
            client.infer_batch(np.zeros((2, 28, 28, 2), np.float32))
        with pytest.raises(UserError, match=r"refused a request .*batch-size must be <= 16"):
            client.infer_batch(np.zeros((17, 28, 28, 1), np.float32))


@pytest.mark.slow
def test_unknown_model_version_or_name(server):
    from mnist_etc.triton.client import ClassifierClient

    with pytest.raises(UserError, match=r"model 'spare' is not ready .*ready models: digits, digits_onnx"):
        ClassifierClient(server.grpc_url, "spare")
    with pytest.raises(UserError, match=r"version 9 of model 'digits' is not served .*served versions: 1"):
        ClassifierClient(server.grpc_url, "digits", version=9)
    with pytest.raises(UserError, match="model name '../digits' is not accepted"):
        ClassifierClient(server.grpc_url, "../digits")


@pytest.mark.slow
def test_explicit_mode_loads_with_config_override_and_unloads(server, grpc_client, tiny_split):
    from mnist_etc.triton.client import ClassifierClient

    override = CFG.replace(instance_count=2, max_queue_delay_microseconds=100, preferred_batch_size=(4, 8))
    grpc_client.load_model("spare", config=to_json("spare", PYTHON, override))
    try:
        assert TritonModelConfig.from_proto(grpc_client.get_model_config("spare").config) == override
        with ClassifierClient(server.grpc_url, "spare") as client:
            assert client.infer(tiny_split.x_test[:3]).shape == (3, 10)
    finally:
        grpc_client.unload_model("spare")
    assert not grpc_client.is_model_ready("spare")


@pytest.mark.slow
def test_perf_analyzer_runs_against_the_server(server):
    # A fixed request count: one measurement, no stability windows that a loaded CI machine could miss.
    cmd = [str(perf_analyzer_binary()), "-m", "digits", "-u", server.grpc_url, "-i", "grpc", "-b", "5",
           "--shape", "input:28,28,1", "--concurrency-range", "1:1", "--request-count", "200"]
    out = subprocess.run(cmd, env=perf_analyzer_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-800:] + out.stderr[-800:]
    assert "Throughput:" in out.stdout


def test_perf_analyzer_starts_with_its_environment():
    out = subprocess.run([str(perf_analyzer_binary()), "--version"], env=perf_analyzer_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "2.51.0" in out.stdout + out.stderr


# -- start-up failures ------------------------------------------------------------------------------------

def test_port_taken_is_one_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError, match=f"grpc port {port} on 127.0.0.1 is already in use"):
            TritonServer(ServerConfig(tmp_path, grpc_port=port, log_dir=tmp_path / "logs")).start()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"load_models": ("../x",), "model_control_mode": "explicit"}, "model name '../x' is not accepted"),
    ({"load_models": ("digits",)}, "needs model control mode 'explicit'"),
    ({"model_control_mode": "poll"}, "must be 'none' or 'explicit'"),
    ({"http_port": 70000}, "http_port must be a port number in 0..65535"),
    ({"http_port": 9000, "grpc_port": 9000}, "ports must differ"),
    ({"http_thread_count": 0}, "http_thread_count must be an integer >= 1 (or None for Triton's default), got 0"),
])
def test_bad_server_config(tmp_path, kwargs, fragment):
    with pytest.raises(UserError) as err:
        ServerConfig(tmp_path, **kwargs)
    assert fragment in str(err.value)


def test_missing_repository_or_model(tmp_path):
    with pytest.raises(UserError, match="model repository .* does not exist"):
        TritonServer(ServerConfig(tmp_path / "nope")).start()
    with pytest.raises(UserError, match="model 'digits' is not in repository .*available: none"):
        TritonServer(ServerConfig(tmp_path, model_control_mode="explicit", load_models=("digits",))).start()


@pytest.mark.slow
def test_model_that_fails_to_load_reports_the_log_and_leaves_no_process(tmp_path):
    broken = tmp_path / "repo"
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"this is not an ONNX model")
    add_version(broken, "broken", bad_onnx, {}, CFG, backends=(PYTHON,))
    server = TritonServer(ServerConfig(broken, log_dir=tmp_path / "logs"))
    with pytest.raises(ServerError) as err:
        server.start()
    text = str(err.value)   # one sentence naming the model, the version and the file, and where the log is
    onnx = broken.resolve() / "broken" / "1" / "model.onnx"
    assert text.startswith(f"Triton could not load model 'broken' version 1 from {onnx} (ONNX Runtime: "), text
    assert "\n" not in text and f"the server log is {server.log_path}." in text
    assert server.proc is None and not [p for p in tmp_path.glob("logs/*.log") if not p.read_text()]


@pytest.mark.slow
def test_onnx_config_on_the_plain_embedded_server_says_why(repo, tmp_path):
    server = TritonServer(ServerConfig(repo, model_control_mode="explicit", load_models=("digits_onnx",),
                                       log_dir=tmp_path / "logs", backend_dir=tmp_path / "backends"))
    with pytest.raises(ServerError, match="needs the onnxruntime backend, which the pip-shipped server lacks"):
        server.start()


@pytest.mark.slow
def test_start_stop_leaves_no_process_and_timeout_is_reported(repo, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    server = TritonServer(ServerConfig(empty, model_control_mode="explicit", log_dir=tmp_path / "logs"))
    with server:
        pgid = server.proc.pid
        assert server.running() and server.startup_seconds < 60
    assert not group_alive(pgid)
    # Loading a model takes a second or more (the Python stub starts), far beyond this timeout.
    slow = TritonServer(ServerConfig(repo, model_control_mode="explicit", load_models=("digits",),
                                     log_dir=tmp_path / "logs", startup_timeout=0.05))
    with pytest.raises(ServerError, match=r"was not ready after 0.05 s"):
        slow.start()
    assert slow.proc is None


@pytest.mark.slow
def test_backend_profile_counts_every_request_and_image_it_served(repo, tiny_split, tmp_path, monkeypatch):
    """MNIST_ETC_BACKEND_PROFILE (benchmarks/bench_efficiency.py): the stub adds up its phases per instance and
    writes them when unloaded; the counts are the requests and images this test sent."""
    from mnist_etc.triton.client import ClassifierClient

    profile = tmp_path / "profile"
    profile.mkdir()
    monkeypatch.setenv("MNIST_ETC_BACKEND_PROFILE", str(profile))
    with TritonServer(ServerConfig(repo, model_control_mode="explicit", load_models=("digits",),
                                   log_dir=tmp_path / "logs")) as server:
        with ClassifierClient(server.grpc_url, "digits") as client:
            client.infer(tiny_split.x_test[:5])
            client.infer(tiny_split.x_test[:12], batch_size=4)   # 3 requests of 4
    [written] = list(profile.glob("*.json"))
    p = json.loads(written.read_text())
    assert p["requests"] == 4 and p["images"] == 17 and 1 <= p["executes"] <= 4, p
    assert set(p["seconds"]) == {"inputs", "batch", "run", "outputs"} and p["seconds"]["run"] > 0, p
