"""Serving efficiency: images/s served by Triton over the in-process ONNX Runtime ceiling at the same batch, before
and after the python backend's fix, on the course project's command shape and at the best configuration tried,
with a profile of where the time goes.

    .venv/bin/python benchmarks/bench_efficiency.py                      # ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_efficiency.py --rounds 1 --window-ms 1000   # a quick look

The course command shape: perf_analyzer over HTTP, concurrency 20, 5 images per request (`-b 5`), against the
pip-shipped tritonserver with the python backend running ONNX Runtime (mnist_etc/triton/python_model.py), on
the same 2 cores as perf_analyzer. Configurations (all max batch size 64, dynamic batching):

- before:  the previous release's served defaults: 1 instance, queue delay 500 us, ONNX Runtime's default
           intra-op threads (one per core) spinning while idle (`allow_spinning: "1"` restores that), Triton's
           default 8 HTTP threads;
- no spinning only: "before" with idle threads that do not spin (this release's model.py), threads unchanged;
- 1 ORT thread, no spinning: also 1 intra-op thread (this release's model config);
- after:   this release's defaults: the same with 1 HTTP thread per 2 cores (ServerConfig.http_thread_count);
- after, delay 100 / after, 2 instances: the same fix at other settings; the best of the "after" rows is
           "at the best configuration".

Each round measures the ceiling (ONNX Runtime in this process, batch 5, back-to-back `session.run`, with its
default threads and with 1 thread: the higher counts, so efficiency is never flattered by a weak ceiling),
then every configuration once, in a rotated order; efficiency is each served figure over its own round's
ceiling, and the table gives the median over rounds with the range.

The profile of each served measurement: CPU cores used by tritonserver, the python stub(s) and perf_analyzer
(from /proc and getrusage), perf_analyzer's split of the request latency (server queue, compute
input/infer/output), and the stub's own split of `execute` (MNIST_ETC_BACKEND_PROFILE: reading inputs, forming
the batch, the ONNX Runtime call, building responses) per request and the mean batch it ran.

Writes <out>/efficiency.json and efficiency.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deployments.local_stack import process_table  # noqa: E402
from mnist_etc.errors import UserError  # noqa: E402

MODEL = "mnist_etc"
BATCH = 5
CONCURRENCY = 20
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def configs():
    """name -> (model config, extra model-config parameters, HTTP threads: None = Triton's 8, "default" = ours)."""
    from mnist_etc.triton.model_config import TritonModelConfig

    before = TritonModelConfig(intra_op_threads=0)
    after = TritonModelConfig()
    return {
        "before": (before, {"allow_spinning": "1"}, None),
        "no spinning only": (before, {}, None),
        "1 ORT thread, no spinning": (after, {}, None),
        "after": (after, {}, "default"),
        "after, delay 100": (after.replace(max_queue_delay_microseconds=100), {}, "default"),
        "after, 2 instances": (after.replace(instance_count=2), {}, "default"),
    }


# ------------------------------------------------------------------------------------------------ processes

def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def server_group(pgid: int) -> list[int]:
    """tritonserver and its python stubs: TritonServer starts them in a process group of their own."""
    return [pid for pid, (_, group) in process_table().items() if group == pgid]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------------------------ measuring

def write_repository(base: Path, repo: Path, cfg, extra_params: dict[str, str]) -> None:
    from mnist_etc.triton.model_config import PYTHON, to_pbtxt

    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(base, repo)
    text = to_pbtxt(MODEL, PYTHON, cfg)
    for key, value in extra_params.items():
        text += f'parameters {{\n  key: "{key}"\n  value {{\n    string_value: "{value}"\n  }}\n}}\n'
    (repo / MODEL / "config.pbtxt").write_text(text)


def served(repo: Path, work: Path, settings, http_threads: int | None | str = "default") -> dict:
    """One perf_analyzer measurement at the course shape on a fresh server, with the profile."""
    from mnist_etc.benchmark.perf import PerfFailure, run_perf_analyzer
    from mnist_etc.triton.server import ServerConfig, TritonServer

    profile_dir = work / "stub-profile"
    shutil.rmtree(profile_dir, ignore_errors=True)
    profile_dir.mkdir(parents=True)
    os.environ["MNIST_ETC_BACKEND_PROFILE"] = str(profile_dir)   # reaches the stubs through the server's env
    try:
        threads = {} if http_threads == "default" else {"http_thread_count": http_threads}
        with TritonServer(ServerConfig(repo, log_dir=work / "logs", **threads)) as server:
            procs = server_group(server.proc.pid)
            names = {p: comm(p) for p in procs}
            before = {p: cpu_seconds(p) for p in procs}
            client_before = children_cpu()
            t0 = time.monotonic()
            try:
                m = run_perf_analyzer(server.http_url, "http", MODEL, None, BATCH, CONCURRENCY, settings,
                                      work / "pa.csv", work / "pa.log")
            except PerfFailure as exc:
                return {"error": f"{exc.kind}: {exc.reason}"}
            wall = time.monotonic() - t0
            cores: dict[str, float] = {}
            for p in procs:
                kind = "tritonserver" if names[p] == "tritonserver" else (
                    "python stub" if names[p].startswith("triton_python") else None)
                if kind:
                    cores[kind] = cores.get(kind, 0.0) + (cpu_seconds(p) - before[p]) / wall
            cores["perf_analyzer"] = (children_cpu() - client_before) / wall
    finally:
        os.environ.pop("MNIST_ETC_BACKEND_PROFILE", None)
    stub = {"executes": 0, "requests": 0, "images": 0, "seconds": {}}
    for f in profile_dir.glob("*.json"):   # written by each instance when the server unloads it
        p = json.loads(f.read_text())
        for k in ("executes", "requests", "images"):
            stub[k] += p[k]
        for k, v in p["seconds"].items():
            stub["seconds"][k] = stub["seconds"].get(k, 0.0) + v
    stub_us = ({k: 1e6 * v / stub["requests"] for k, v in stub["seconds"].items()} if stub["requests"] else {})
    return {"images_per_second": m.throughput, "p99_ms": m.p99_ms, "settled": m.settled,
            "spread": m.throughput_spread, "windows": m.windows,
            "latency_split_us": {"client send": 1e3 * m.client_send_ms, "network+server send/recv": 1e3 * m.network_ms,
                                 "server queue": 1e3 * m.server_queue_ms,
                                 "compute input": 1e3 * m.server_compute_input_ms,
                                 "compute infer": 1e3 * m.server_compute_infer_ms,
                                 "compute output": 1e3 * m.server_compute_output_ms},
            "cores": {k: round(v, 3) for k, v in cores.items()},
            "stub_us_per_request": stub_us,
            "stub_mean_batch": stub["images"] / stub["executes"] if stub["executes"] else None,
            "stub_requests_per_execute": stub["requests"] / stub["executes"] if stub["executes"] else None}


def ceiling(onnx: Path, seconds: float) -> dict:
    from mnist_etc.benchmark.ceiling import measure_in_process

    by_threads = {t: measure_in_process(onnx, BATCH, seconds=seconds, threads=t).images_per_second for t in (0, 1)}
    return {"images_per_second": max(by_threads.values()), "by_threads": by_threads}


# ------------------------------------------------------------------------------------------------ the model

def model_dir(arg: Path | None, out: Path) -> Path:
    if arg is not None:
        return arg
    made = out / "model"
    if not (made / "model.json").is_file():
        log(f"no --model: training one of the champion's architecture in seconds into {made}")
        subprocess.run([str(Path(sys.executable).parent / "mnist-etc"), "train", "--ae-epochs", "1", "--clf-epochs",
                        "1", "--train-size", "500", "--out", str(made), "--quiet"], check=True, cwd=ROOT)
    return made


def nan_median(values) -> float:
    known = [v for v in values if v == v]
    return statistics.median(known) if known else float("nan")


def fmt_range(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):,.{digits}f} [{min(values):,.{digits}f}, {max(values):,.{digits}f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="a trained-model directory (default: train one)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of ceiling + every configuration (default 3)")
    ap.add_argument("--window-ms", type=int, default=3000, help="perf_analyzer window (default 3000)")
    ap.add_argument("--ceiling-seconds", type=float, default=2.0, help="each in-process measurement (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "efficiency")
    ap.add_argument("--render", type=Path, default=None, help="only print the tables of a saved efficiency.json")
    args = ap.parse_args(argv)
    if args.render is not None:
        print(markdown(json.loads(args.render.read_text())))
        return 0
    if args.rounds < 1 or args.window_ms < 100 or args.ceiling_seconds <= 0:
        print("bench_efficiency: --rounds must be >= 1, --window-ms >= 100 and --ceiling-seconds > 0.",
              file=sys.stderr)
        return 2

    from mnist_etc.benchmark.perf import MeasurementSettings
    from mnist_etc.export import export_to_repository
    from mnist_etc.model_store import load_model
    from mnist_etc.triton.model_config import PYTHON
    from mnist_etc.triton.server import ServerConfig

    args.out.mkdir(parents=True, exist_ok=True)
    try:
        stored = load_model(model_dir(args.model, args.out))
    except UserError as exc:
        print(f"bench_efficiency: {exc}", file=sys.stderr)
        return 2
    settings = MeasurementSettings(interval_ms=args.window_ms)
    table = configs()
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "loadavg_before": os.getloadavg()},
                     "command": " ".join([Path(sys.executable).name, *sys.argv]),
                     "shape": {"protocol": "http", "concurrency": CONCURRENCY, "batch": BATCH},
                     "configs": {k: {**c.to_dict(), **p, "http_thread_count": ServerConfig.http_thread_count
                                     if h == "default" else h} for k, (c, p, h) in table.items()}, "rounds": []}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp:
        work = Path(tmp)
        export, _ = export_to_repository(stored, work / "base", MODEL, table["after"][0], backends=(PYTHON,))
        onnx = Path(export.onnx_path)
        names = list(table)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            ceil = ceiling(onnx, args.ceiling_seconds)
            log(f"round {r + 1}/{args.rounds}: ceiling {ceil['images_per_second']:,.0f} images/s "
                f"(threads default {ceil['by_threads'][0]:,.0f}, 1 thread {ceil['by_threads'][1]:,.0f})")
            row = {"ceiling": ceil, "served": {}}
            for name in order:
                cfg, params, http_threads = table[name]
                repo = work / "repo"
                write_repository(work / "base", repo, cfg, params)
                m = served(repo, work, settings, http_threads)
                if "error" not in m:
                    m["efficiency"] = m["images_per_second"] / ceil["images_per_second"]
                    log(f"  {name}: {m['images_per_second']:,.0f} images/s, p99 {m['p99_ms']:.2f} ms, efficiency "
                        f"{m['efficiency']:.3f}; cores {m['cores']}")
                else:
                    log(f"  {name}: {m['error']}")
                row["served"][name] = m
            results["rounds"].append(row)
            args.out.joinpath("efficiency.json").write_text(json.dumps(results, indent=2) + "\n")
    results["seconds"] = round(time.monotonic() - t_start, 1)
    results["machine"]["loadavg_after"] = os.getloadavg()
    args.out.joinpath("efficiency.json").write_text(json.dumps(results, indent=2) + "\n")
    md = markdown(results)
    args.out.joinpath("efficiency.md").write_text(md)
    print(md)
    return 0


def markdown(results: dict) -> str:
    rounds = results["rounds"]
    ceilings = [r["ceiling"]["images_per_second"] for r in rounds]
    lines = [f"In-process ONNX Runtime ceiling at batch {BATCH}: {fmt_range(ceilings)} images/s "
             f"(median [min, max] over {len(rounds)} rounds).", "",
             "| configuration | images/s | p99 ms | efficiency | cores: tritonserver / stub / perf_analyzer | "
             "requests per execute |", "| --- | --- | --- | --- | --- | --- |"]
    best = None
    for name in results["configs"]:
        ok = [r["served"][name] for r in rounds if "error" not in r["served"].get(name, {"error": 1})]
        if not ok:
            lines.append(f"| {name} | failed | | | | |")
            continue
        eff = [m["efficiency"] for m in ok]
        cores = {k: statistics.median(m["cores"].get(k, 0.0) for m in ok)
                 for k in ("tritonserver", "python stub", "perf_analyzer")}
        rpe = [m["stub_requests_per_execute"] for m in ok if m["stub_requests_per_execute"]]
        per_execute = f"{statistics.median(rpe):.1f}" if rpe else "?"
        lines.append(f"| {name} | {fmt_range([m['images_per_second'] for m in ok])} | "
                     f"{statistics.median(m['p99_ms'] for m in ok):.2f} | {fmt_range(eff, 3)} | "
                     f"{cores['tritonserver']:.2f} / {cores['python stub']:.2f} / {cores['perf_analyzer']:.2f} | "
                     f"{per_execute} |")
        if name != "before" and (best is None or statistics.median(eff) > best[1]):
            best = (name, statistics.median(eff))
    lines += ["", "Where a request's time goes (median over rounds, microseconds; the stub's phases are per request, "
                  "the batch's cost shared by the requests it merged):", "",
              "| configuration | server queue | compute input | compute infer | compute output | stub: inputs | "
              "stub: batch | stub: ONNX Runtime | stub: responses |", "| --- | --- | --- | --- | --- | --- | --- | "
              "--- | --- |"]
    for name in results["configs"]:
        ok = [r["served"][name] for r in rounds if "error" not in r["served"].get(name, {"error": 1})]
        if not ok:
            continue
        # An unsettled measurement knows only its throughput and p99 (its split is NaN): the median of the others.
        split = {k: nan_median(m["latency_split_us"][k] for m in ok)
                 for k in ("server queue", "compute input", "compute infer", "compute output")}
        stub = {k: nan_median(m["stub_us_per_request"].get(k, float("nan")) for m in ok)
                for k in ("inputs", "batch", "run", "outputs")}
        lines.append(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in split.values()) + " | "
                     + " | ".join(f"{v:,.1f}" for v in stub.values()) + " |")
    if best:
        lines += ["", f"Best configuration tried: {best[0]} (efficiency {best[1]:.3f})."]
    m = results["machine"]
    lines += ["", f"Machine: {m['cpus']} cores, {m['platform']}; load average before "
                  f"{m['loadavg_before'][0]:.2f}, after {m.get('loadavg_after', [float('nan')])[0]:.2f}; "
                  f"{results.get('seconds', 0):.0f} s. Command: `{results['command']}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
