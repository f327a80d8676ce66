"""Serving figures: export time, Triton start-to-ready time, in-process ONNX Runtime images/s at batch 1, 5
and 64, and the same through the embedded Triton at concurrency 1 (perf_analyzer over gRPC, and a plain
Python gRPC client loop for comparison).

    .venv/bin/python benchmarks/bench_serving.py --model artifacts/models/dev
    # -> table on stdout, artifacts/benchmarks/serving-<time>.json

The model is exported into a temporary repository, so triton/model_repository is left alone.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_etc.atomic import write_json_atomic  # noqa: E402
from mnist_etc.errors import UserError  # noqa: E402

BATCHES = (1, 5, 64)


def ort_images_per_second(session, x: np.ndarray, batch: int, seconds: float) -> float:
    feed = {"input": np.ascontiguousarray(x[:batch])}
    for _ in range(20):  # warm-up: first runs allocate and pick kernels
        session.run(["logits"], feed)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(["logits"], feed)
        n += 1
    return n * batch / (time.perf_counter() - start)


def client_images_per_second(client, x: np.ndarray, batch: int, seconds: float) -> float:
    b = np.ascontiguousarray(x[:batch])
    for _ in range(20):
        client.infer_batch(b)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        client.infer_batch(b)
        n += 1
    return n * batch / (time.perf_counter() - start)


def perf_analyzer(model: str, url: str, batch: int, window_ms: int, stability: int, out_csv: Path) -> dict:
    from mnist_etc.triton.runtime_env import perf_analyzer_binary, perf_analyzer_env

    cmd = [str(perf_analyzer_binary()), "-m", model, "-u", url, "-i", "grpc", "-b", str(batch),
           "--shape", "input:28,28,1", "--concurrency-range", "1:1", "--measurement-interval", str(window_ms),
           "--stability-percentage", str(stability), "-f", str(out_csv)]
    run = subprocess.run(cmd, env=perf_analyzer_env(), capture_output=True, text=True, timeout=600)
    if run.returncode != 0:  # e.g. no stable measurement on a busy machine: a failed point, not a crash
        lines = [ln.strip() for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
        return {"error": lines[-1] if lines else f"exit code {run.returncode}", "command": " ".join(cmd)}
    row = next(csv.DictReader(out_csv.open()))
    # perf_analyzer counts inferences = requests x batch size, i.e. images here; latencies are microseconds.
    return {"images_per_second": float(row["Inferences/Second"]), "p50_ms": float(row["p50 latency"]) / 1000,
            "p99_ms": float(row["p99 latency"]) / 1000, "server_queue_us": float(row["Server Queue"]),
            "server_compute_us": float(row["Server Compute Infer"]), "command": " ".join(cmd)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("artifacts/models/dev"), help="trained-model directory")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each in-process/client measurement")
    p.add_argument("--window-ms", type=int, default=3000, help="perf_analyzer measurement window")
    p.add_argument("--stability", type=int, default=10,
                   help="perf_analyzer --stability-percentage (its default 10; raise it on a busy machine)")
    p.add_argument("--starts", type=int, default=3, help="server starts timed (median reported)")
    p.add_argument("--out", type=Path, default=Path("artifacts/benchmarks"))
    args = p.parse_args(argv)

    from mnist_etc.data import load_split
    from mnist_etc.export import export_to_repository, ort_session
    from mnist_etc.model_store import load_model
    from mnist_etc.triton.client import ClassifierClient
    from mnist_etc.triton.model_config import PYTHON, TritonModelConfig, to_json
    from mnist_etc.triton.server import ServerConfig, TritonServer

    try:
        stored = load_model(args.model)
    except UserError as exc:
        print(f"bench_serving: {exc} Train one first (see README: 'mnist-etc train --out {args.model}').",
              file=sys.stderr)
        return 2
    split = load_split(stored.data_config)
    x = split.x_test
    cfg = TritonModelConfig()  # the defaults export writes: max batch 64, dynamic batching 500 us, 1 instance
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version(), "loadavg_before": os.getloadavg()},
                     "source": {"model_dir": str(args.model), "config": stored.record["config"]},
                     "triton_config": cfg.to_dict(), "created": dt.datetime.now(dt.timezone.utc).isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        repo = Path(tmp) / "repo"
        start = time.perf_counter()
        export, published = export_to_repository(stored, repo, "bench", cfg, backends=(PYTHON,))
        results["export_seconds"] = {"total": time.perf_counter() - start, "convert_parity_accuracy": export.seconds}
        session = ort_session(export.onnx_path)
        results["in_process_ort"] = {b: ort_images_per_second(session, x, b, args.seconds) for b in BATCHES}

        server_cfg = ServerConfig(repo, model_control_mode="explicit", load_models=("bench",),
                                  log_dir=Path(tmp) / "logs")
        starts = []
        for _ in range(args.starts - 1):
            with TritonServer(server_cfg) as server:
                starts.append(server.startup_seconds)
        with TritonServer(server_cfg) as server:
            starts.append(server.startup_seconds)
            results["server_start_to_ready_seconds"] = {"median": statistics.median(starts), "all": starts}
            with ClassifierClient(server.grpc_url, "bench") as client:
                results["triton_python_client_c1"] = {b: client_images_per_second(client, x, b, args.seconds)
                                                      for b in BATCHES}
            results["triton_perf_analyzer_c1"] = {
                b: perf_analyzer("bench", server.grpc_url, b, args.window_ms, args.stability,
                                 Path(tmp) / f"pa_{b}.csv")
                for b in BATCHES}
            # At concurrency 1 no second request ever arrives, so every request waits the full queue delay.
            # Reload the model with delay 0 through explicit model control (no restart) to show the cost.
            no_delay = cfg.replace(max_queue_delay_microseconds=0)
            with ClassifierClient(server.grpc_url, "bench") as client:
                client.client.load_model("bench", config=to_json("bench", PYTHON, no_delay))
                loaded = TritonModelConfig.from_proto(client.client.get_model_config("bench").config)
                assert loaded.normalized() == no_delay.normalized(), loaded
            results["triton_perf_analyzer_c1_delay0"] = {
                b: perf_analyzer("bench", server.grpc_url, b, args.window_ms, args.stability,
                                 Path(tmp) / f"pa0_{b}.csv")
                for b in BATCHES}

    results["machine"]["loadavg_after"] = os.getloadavg()
    out = args.out / f"serving-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    write_json_atomic(out, results)
    e, s = results["export_seconds"], results["server_start_to_ready_seconds"]
    print(f"machine: {os.cpu_count()} cores; model {args.model} (hid_dim {stored.record['config']['hid_dim']})")
    print(f"export (tf2onnx + parity + test accuracy + publish): {e['total']:.2f} s")
    print(f"server start-to-ready (median of {len(s['all'])}): {s['median']:.2f} s  {[round(v, 2) for v in s['all']]}")
    print("images/s at concurrency 1; Triton = embedded server, python backend, 1 instance, gRPC; "
          "efficiency = Triton (perf_analyzer) / in-process")
    print(f"{'batch':>5}  {'ORT in-process':>14}  {'perf_analyzer':>13}  {'p50/p99 ms':>11}  {'py client':>9}  "
          f"{'efficiency':>10}  {'delay 0: perf_analyzer':>22}  {'p50/p99 ms':>11}")
    nan = {"images_per_second": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan")}
    for b in BATCHES:
        ort, pa = results["in_process_ort"][b], {**nan, **results["triton_perf_analyzer_c1"][b]}
        cl, pz = results["triton_python_client_c1"][b], {**nan, **results["triton_perf_analyzer_c1_delay0"][b]}
        print(f"{b:>5}  {ort:>14.0f}  {pa['images_per_second']:>13.0f}  {pa['p50_ms']:>5.2f}/{pa['p99_ms']:<5.2f}  "
              f"{cl:>9.0f}  {pa['images_per_second'] / ort:>10.3f}  {pz['images_per_second']:>22.0f}  "
              f"{pz['p50_ms']:>5.2f}/{pz['p99_ms']:<5.2f}")
    for name in ("triton_perf_analyzer_c1", "triton_perf_analyzer_c1_delay0"):
        for b, r in results[name].items():
            if "error" in r:
                print(f"{name} batch {b}: perf_analyzer failed: {r['error']}")
    print(f"load average before/after: {results['machine']['loadavg_before'][0]:.1f}/"
          f"{results['machine']['loadavg_after'][0]:.1f} on {os.cpu_count()} cores")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
