"""`mnist-etc benchmark` against Triton Model Analyzer on Model Analyzer's own ground, side by side.

    .venv/bin/python benchmarks/bench_vs_model_analyzer.py                 # ~20 min on 2 cores (MA ~12 of them)
    .venv/bin/python benchmarks/bench_vs_model_analyzer.py --max-concurrency 2 --max-batch-size 2 --max-instances 1
                                                                           # a small space: checks the set-up
    .venv/bin/python benchmarks/bench_vs_model_analyzer.py --space large --ma-modes quick optuna
                                                                           # the large space (brute impractical)
    .venv/bin/python benchmarks/bench_vs_model_analyzer.py --ma-modes --busy   # ours only, quiet then beside a busy core

The space is Model Analyzer's automatic brute search: instance count 1..2 x max batch size 1, 2, 4, ..., 64
(dynamic batching, no queue delay) x concurrency 1, 2, 4, ..., 32, one image per request, over gRPC, on the
tritonserver of the nvidia-pytriton wheel (python backend running ONNX Runtime), both tools under the same p99
budget (Model Analyzer's `latency_budget`). `--space large` is issue 28's large space: instances 1..4 x max batch
size 1..128 x concurrency 1..128 (powers of 2), and for mnist-etc also queue delays 0, 100, 500 and 2000 us
(Model Analyzer's automatic search does not vary the queue delay: its modes search the first three axes, a
quarter of the space, with no delay). In order, one after the other:

1. the model: the champion of `make demo` (the newest version of `mnist_etc` in triton/model_repository, where
   the pipeline exports it), else the newest sweep winner (artifacts/sweeps/*/winner.json), else a model
   trained in seconds (`mnist-etc train --ae-epochs 1 --clf-epochs 1 --train-size 500`); copied into a fresh
   repository of its own under the output folder, with a base config that is the space's default (1 instance,
   max batch size 64, dynamic batching, no queue delay, no preferred batch size: Model Analyzer keeps a
   preferred size and would skip smaller max batch sizes). Its model.py appends the project venv's
   site-packages to sys.path, so that the stub Model Analyzer starts finds onnxruntime.
2. Model Analyzer 1.58 (PyPI `triton-model-analyzer`, installed into its own venv under the output folder: it
   conflicts with the project's pins), `profile` in local launch mode, as ../shared/peers/peer_model_analyzer.sh
   ran it, once per search mode (`--ma-modes`, default brute, quick and optuna: its `run_config_search_mode`),
   one after the other; each mode's checkpoint is cleared first so that nothing is reused. A mode that refuses
   this set-up or gives no result is recorded with its message and left out of the re-measurement.
3. `mnist-etc benchmark` with its default (adaptive) strategy on the same space, as a separate process; with
   `--busy`, once more beside a process that keeps one core busy (a Python loop, stopped when ours ends).
4. Each tool's best configuration (at its concurrency) re-measured by the same perf_analyzer command on one
   server, the order rotated each round, so that no tool's own noisy figure decides.

Writes <out>/comparison.md and comparison.json (the table, the machine, its load average, the commands).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MA_VERSION = "1.58.0"
MA_MODES = ("brute", "quick", "optuna")   # its run_config_search_mode values
MODEL = "mnist_etc"


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def powers_of_two(top: int) -> list[int]:
    return [2 ** i for i in range(top.bit_length()) if 2 ** i <= top]


# --------------------------------------------------------------------------------------------- the model

def locate_champion(out: Path) -> tuple[Path, str, int, str]:
    """(repository, served model, version, where it came from) of the model to benchmark."""
    from mnist_etc.triton.repository import DEFAULT_REPOSITORY, versions

    repo = ROOT / DEFAULT_REPOSITORY
    if versions(repo, MODEL):
        return repo, MODEL, versions(repo, MODEL)[-1], f"the demo's champion ({repo / MODEL})"
    made = out / "champion-repository"
    if versions(made, MODEL):
        return made, MODEL, versions(made, MODEL)[-1], f"exported earlier by this script ({made})"
    winners = sorted((ROOT / "artifacts" / "sweeps").glob("*/winner.json"), key=lambda p: p.stat().st_mtime)
    if winners:
        source, how = ["--winner", str(winners[-1])], f"the newest sweep winner ({winners[-1]})"
    else:
        model_dir = out / "tiny-model"
        log("no exported champion and no sweep winner: training a model in seconds")
        subprocess.run([str(BIN / "mnist-etc"), "train", "--ae-epochs", "1", "--clf-epochs", "1", "--train-size", "500",
                        "--quiet", "--out", str(model_dir)], cwd=ROOT, check=True)
        source, how = ["--model", str(model_dir)], "a model trained for this run (1 + 1 epochs, 500 digits)"
    subprocess.run([str(BIN / "mnist-etc"), "export", *source, "--repository", str(made), "--backends", "python",
                    "--no-mlflow-log"], cwd=ROOT, check=True)
    return made, MODEL, versions(made, MODEL)[-1], how


def prepare_repository(src: Path, model: str, version: int, dest: Path) -> Path:
    """A fresh repository holding only `model` version `version` as version 1, with the space's base config."""
    from mnist_etc.triton.model_config import PYTHON, TritonModelConfig
    from mnist_etc.triton.repository import write_config
    from mnist_etc.triton.runtime_env import site_packages

    if dest.exists():
        shutil.rmtree(dest)
    version_dir = dest / MODEL / "1"
    version_dir.mkdir(parents=True)
    shutil.copyfile(src / model / str(version) / "model.onnx", version_dir / "model.onnx")
    model_py = (src / model / str(version) / "model.py").read_text()
    # The stub Model Analyzer starts does not get the server's environment: onnxruntime must be found anyway.
    (version_dir / "model.py").write_text(f"import sys\nsys.path.append({str(site_packages())!r})\n" + model_py)
    write_config(dest, MODEL, PYTHON, TritonModelConfig(max_batch_size=64, max_queue_delay_microseconds=0))
    return dest


# ------------------------------------------------------------------------------------------ Model Analyzer

def install_model_analyzer(venv: Path) -> Path:
    exe = venv / "bin" / "model-analyzer"
    if exe.is_file():
        shown = subprocess.run([str(venv / "bin" / "pip"), "show", "triton-model-analyzer"], capture_output=True,
                               text=True).stdout
        if f"Version: {MA_VERSION}" in shown:
            return exe
    log(f"installing triton-model-analyzer {MA_VERSION} into {venv}")
    subprocess.run([str(Path(sys.base_prefix) / "bin" / "python3"), "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"triton-model-analyzer=={MA_VERSION}"], check=True)
    return exe


def model_analyzer_config(repo: Path, work: Path, budget_ms: float | None, space: dict[str, int],
                          mode: str = "brute") -> Path:
    """The peer's YAML (../shared/peers/peer_model_analyzer.sh) with free ports and our paths."""
    import sysconfig

    from mnist_etc.ports import free_ports
    from mnist_etc.triton.runtime_env import prepare_backend_dir, site_packages, tritonserver_binary

    sp = site_packages()
    http, grpc, metrics = free_ports(3)
    config = {
        "model_repository": str(repo), "output_model_repository_path": str(work / "out"),
        "override_output_model_repository": True, "export_path": str(work / "results"),
        "checkpoint_directory": str(work / "checkpoints"),
        "triton_launch_mode": "local", "triton_server_path": str(tritonserver_binary()),
        "perf_analyzer_path": str(BIN / "perf_analyzer"),
        "triton_http_endpoint": f"localhost:{http}", "triton_grpc_endpoint": f"localhost:{grpc}",
        "triton_metrics_url": f"http://localhost:{metrics}/metrics",
        "triton_server_flags": {"backend_directory": str(prepare_backend_dir(work / "backends")), "http_port": http,
                                "grpc_port": grpc, "metrics_port": metrics},
        "triton_server_environment": {
            "LD_LIBRARY_PATH": f"{sysconfig.get_config_var('LIBDIR')}:{sp / 'nvidia_pytriton.libs'}:"
                               f"{sp / 'nvidia' / 'cuda_runtime' / 'lib'}",
            "PYTHONPATH": str(sp)},
        "perf_analyzer_flags": {"shape": "input:28,28,1"},
        "run_config_search_mode": mode,
        "run_config_search_max_concurrency": space["concurrency"],
        "run_config_search_max_instance_count": space["instances"],
        "run_config_search_max_model_batch_size": space["batch"],
        "profile_models": {MODEL: {"cpu_only": True}},
    }
    if budget_ms is not None:
        config["latency_budget"] = budget_ms
    work.mkdir(parents=True, exist_ok=True)
    path = work / "ma.yaml"
    path.write_text(json.dumps(config, indent=2))   # JSON is YAML
    return path


def run_model_analyzer(exe: Path, config: Path, work: Path, timeout_s: float, mode: str = "brute") -> dict[str, Any]:
    """One `model-analyzer profile` run; a mode that refuses or fails gives {"error": its message} instead."""
    from mnist_etc.triton.runtime_env import site_packages

    for old in ("checkpoints", "results", "out"):
        shutil.rmtree(work / old, ignore_errors=True)
    env = {**os.environ, "LD_LIBRARY_PATH": str(site_packages() / "nvidia" / "cuda_runtime" / "lib")}
    cmd = [str(exe), "profile", "-f", str(config)]
    log_path = work / "model_analyzer.log"
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            code = None
    wall = time.perf_counter() - start
    text = log_path.read_text()
    points = len(re.findall(r"Profiling \S+: concurrency=", text))
    result = {"tool": f"Model Analyzer {MA_VERSION} (PyPI, local launch, {mode})", "command": " ".join(cmd),
              "wall_seconds": wall, "points": points, "exit_code": code, "log": str(log_path)}
    table = work / "results" / "results" / "metrics-model-inference.csv"
    if code != 0 or not table.is_file():
        errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "Error" in ln]
        result["error"] = (errors[-1] if errors else f"exit code {code}, no results table") + f" (see {log_path})"
        return result
    result.update(best_of_model_analyzer(table, work / "out"))
    return result


def best_of_model_analyzer(table: Path, out: Path) -> dict[str, Any]:
    """Model Analyzer's best measurement that satisfies its constraints, and the config it ran."""
    from mnist_etc.triton.model_config import TritonModelConfig, parse_pbtxt

    with open(table) as f:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]
    # Column titles as Model Analyzer 1.58 writes them.
    def col(row: dict[str, str], *names: str) -> str:
        return next(row[n] for n in names if n in row)

    ok = [r for r in rows if col(r, "Satisfies Constraints", "satisfies_constraints").lower().startswith("yes")]
    best = max(ok or rows, key=lambda r: float(col(r, "Throughput (infer/sec)", "perf_throughput")))
    variant = col(best, "Model Config Path", "model_config_path")
    cfg = TritonModelConfig.from_proto(parse_pbtxt((out / variant / "config.pbtxt").read_text()))
    return {"best_config": cfg.to_dict(), "best_variant": variant,
            "best_concurrency": int(col(best, "Concurrency", "concurrency")),
            "best_throughput": float(col(best, "Throughput (infer/sec)", "perf_throughput")),
            "best_p99_ms": float(col(best, "p99 Latency (ms)", "perf_latency_p99")),
            "best_within_budget": bool(ok), "table_rows": len(rows)}


# ----------------------------------------------------------------------------------------- mnist-etc

def run_ours(repo: Path, out: Path, budget_ms: float | None, space: dict[str, Any], run: str,
             extra: list[str]) -> dict[str, Any]:
    cmd = [str(BIN / "mnist-etc"), "benchmark", "--model", MODEL, "--repository", str(repo),
           "--instance-count", ",".join(map(str, range(1, space["instances"] + 1))),
           "--max-batch-size", ",".join(map(str, powers_of_two(space["batch"]))),
           "--max-queue-delay-us", ",".join(map(str, space["delays"])),
           "--preferred-batch-size", "none", "--concurrency", ",".join(map(str, powers_of_two(space["concurrency"]))),
           "--request-batch-size", "1", "--protocol", "grpc", "--measurement-interval-ms", "1000", "--max-trials", "3",
           "--ceiling-seconds", "1", "--run", run, "--artifacts", str(out), "--no-prefect", "--no-mlflow",
           "--no-write-best", *(["--p99-budget-ms", f"{budget_ms:g}"] if budget_ms is not None else []), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    run_dir = out / "benchmarks" / run
    (out / f"{run}.log").write_text(done.stdout + done.stderr)
    if done.returncode not in (0, 1) or not (run_dir / "best.json").is_file():
        raise SystemExit(f"mnist-etc benchmark failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    record = json.loads((run_dir / "best.json").read_text())
    s, best = record["summary"], record["analysis"]["best"] or record["analysis"]["closest"]
    return {"tool": "mnist-etc benchmark (default strategy: adaptive)", "command": " ".join(cmd),
            "wall_seconds": wall, "points": s["points_ok"] + s["points_failed"], "exit_code": done.returncode,
            "best_config": best["config"], "best_concurrency": best["concurrency"],
            "best_throughput": best["throughput"], "best_p99_ms": best["p99_ms"],
            "best_within_budget": record["analysis"]["verdict"] in ("met", "no_budget"),
            "best_measurements": best["measurements"], "unsettled": s["points_unsettled"],
            "run_dir": str(run_dir), "strategy": record["spec"]["strategy"],
            "top_two_apart": record["analysis"].get("top_two_apart")}


def busy_core(seconds: float) -> subprocess.Popen:
    """A process that keeps one core busy for at most `seconds` (the caller stops it sooner)."""
    loop = f"import time\nend = time.monotonic() + {seconds:.0f}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", loop], start_new_session=True)


# --------------------------------------------------------------------------------------- re-measurement

def remeasure(repo: Path, picks: dict[str, dict[str, Any]], rounds: int, interval_ms: int,
              work: Path) -> dict[str, list[dict[str, float]]]:
    """Each tool's pick, measured by the same perf_analyzer command on one server, alternating order by round."""
    from mnist_etc.benchmark.perf import MeasurementSettings, PerfFailure, run_perf_analyzer
    from mnist_etc.benchmark.reconfigure import ModelControl
    from mnist_etc.triton.model_config import PYTHON, TritonModelConfig
    from mnist_etc.triton.server import ServerConfig, TritonServer

    settings = MeasurementSettings(interval_ms=interval_ms, stability_percentage=10, max_trials=5)
    raw = work / "remeasure"
    raw.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[dict[str, float]]] = {tool: [] for tool in picks}
    order = list(picks)
    cfg = ServerConfig(repo, model_control_mode="explicit", load_models=(MODEL,), log_dir=work / "logs")
    with TritonServer(cfg) as server:
        control = ModelControl(server.grpc_url, "grpc", MODEL, PYTHON)
        try:
            for i in range(rounds):
                for tool in order[i % len(order):] + order[:i % len(order)]:   # rotated each round
                    pick = picks[tool]
                    control.load(TritonModelConfig.from_mapping(pick["best_config"]))
                    name = f"{re.sub(r'[^a-z]+', '-', tool.lower())[:20]}-{i}"
                    try:
                        m = run_perf_analyzer(server.grpc_url, "grpc", MODEL, None, 1, pick["best_concurrency"],
                                              settings, raw / f"{name}.csv", raw / f"{name}.log")
                        out[tool].append({"throughput": m.throughput, "p99_ms": m.p99_ms, "settled": m.settled})
                    except PerfFailure as exc:
                        out[tool].append({"error": exc.reason})
                    log(f"  re-measure round {i + 1}, {tool}: {out[tool][-1]}")
        finally:
            control.close()
    return out


def median_of(samples: list[dict[str, Any]], key: str) -> tuple[float, float, float] | None:
    values = [s[key] for s in samples if key in s]
    return (statistics.median(values), min(values), max(values)) if values else None


# ------------------------------------------------------------------------------------------------- main

def describe(cfg: dict[str, Any], concurrency: int) -> str:
    delay = cfg.get("max_queue_delay_microseconds") or 0
    return (f"{cfg['instance_count']} instance(s), mbs {cfg['max_batch_size']}"
            + (f", delay {delay} us" if delay else "") + f", c {concurrency}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench_vs_model_analyzer")
    ap.add_argument("--budget-ms", type=float, default=20.0, help="p99 budget of both tools (default 20 ms)")
    ap.add_argument("--space", choices=("ma", "large"), default="ma", help=(
        "ma: Model Analyzer's default ground (instances 1-2, max batch 1-64, concurrency 1-32, no queue delay); "
        "large: instances 1-4, max batch 1-128, concurrency 1-128, queue delays 0/100/500/2000 us (for mnist-etc)"))
    ap.add_argument("--max-concurrency", type=int, default=None, help="default: the space's")
    ap.add_argument("--max-batch-size", type=int, default=None, help="default: the space's")
    ap.add_argument("--max-instances", type=int, default=None, help="default: the space's")
    ap.add_argument("--ma-modes", nargs="*", choices=MA_MODES, default=list(MA_MODES),
                    help="Model Analyzer's run_config_search_mode(s), run one after the other (default: all three; "
                         "none: mnist-etc alone)")
    ap.add_argument("--busy", action="store_true", help="run mnist-etc once more with one core kept busy")
    ap.add_argument("--rounds", type=int, default=4, help="re-measurements of each tool's pick (default 4)")
    ap.add_argument("--remeasure-interval-ms", type=int, default=2000)
    ap.add_argument("--ma-timeout-min", type=float, default=60.0)
    ap.add_argument("--ours-args", default="", help="extra options for mnist-etc benchmark, e.g. '--strategy brute'")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    large = args.space == "large"
    space = {"concurrency": args.max_concurrency or (128 if large else 32),
             "batch": args.max_batch_size or (128 if large else 64),
             "instances": args.max_instances or (4 if large else 2),
             "delays": [0, 100, 500, 2000] if large else [0]}
    machine = f"{os.cpu_count()} CPU(s), {platform.machine()}, {platform.platform()}"
    log(f"machine: {machine}; load average {load()}")

    src, model, version, origin = locate_champion(out)
    log(f"model: {origin}, version {version}")
    repo = prepare_repository(src, model, version, out / "repository")
    exe = install_model_analyzer(out / "ma-venv")

    loads = {"start": load()}
    picks: dict[str, dict[str, Any]] = {}
    refused: dict[str, dict[str, Any]] = {}
    for mode in args.ma_modes:
        work = out / ("ma" if mode == "brute" else f"ma-{mode}")
        config = model_analyzer_config(repo, work, args.budget_ms, space, mode)
        log(f"Model Analyzer ({mode}): {exe} profile -f {config}")
        ma = run_model_analyzer(exe, config, work, args.ma_timeout_min * 60, mode)
        ma["config"] = str(config)
        loads[f"after_model_analyzer_{mode}"] = load()
        if "error" in ma:
            log(f"Model Analyzer ({mode}) gave no result after {ma['wall_seconds']:.0f} s: {ma['error']}")
            refused[f"Model Analyzer {mode}"] = ma
            continue
        log(f"Model Analyzer ({mode}): {ma['wall_seconds']:.0f} s, {ma['points']} points; best "
            f"{describe(ma['best_config'], ma['best_concurrency'])}: {ma['best_throughput']:,.0f} infer/s, "
            f"p99 {ma['best_p99_ms']:.2f} ms")
        picks[f"Model Analyzer {mode}"] = ma

    ours = run_ours(repo, out / "ours", args.budget_ms, space, f"vs-ma-{stamp}", args.ours_args.split())
    loads["after_ours"] = load()
    log(f"mnist-etc benchmark: {ours['wall_seconds']:.0f} s, {ours['points']} points; best "
        f"{describe(ours['best_config'], ours['best_concurrency'])}: {ours['best_throughput']:,.0f} images/s, "
        f"p99 {ours['best_p99_ms']:.2f} ms")
    picks["mnist-etc"] = ours
    if args.busy:
        burner = busy_core(args.ma_timeout_min * 60)
        try:
            busy = run_ours(repo, out / "ours", args.budget_ms, space, f"vs-ma-{stamp}-busy", args.ours_args.split())
        finally:
            os.killpg(burner.pid, 9)
            burner.wait()
        busy["tool"] += ", one core kept busy"
        loads["after_ours_busy"] = load()
        log(f"mnist-etc benchmark beside a busy core: {busy['wall_seconds']:.0f} s, {busy['points']} points; best "
            f"{describe(busy['best_config'], busy['best_concurrency'])}: {busy['best_throughput']:,.0f} images/s")
        picks["mnist-etc, one core busy"] = busy

    again = remeasure(repo, picks, args.rounds, args.remeasure_interval_ms, out)
    loads["end"] = load()

    rows = []
    for name, r in picks.items():
        t, p = median_of(again[name], "throughput"), median_of(again[name], "p99_ms")
        rows.append({"tool": r["tool"], "wall_seconds": r["wall_seconds"], "points": r["points"],
                     "best": describe(r["best_config"], r["best_concurrency"]),
                     "own_throughput": r["best_throughput"], "own_p99_ms": r["best_p99_ms"],
                     "remeasured_throughput": t, "remeasured_p99_ms": p, "samples": again[name]})
    budget = f"{args.budget_ms:g} ms" if args.budget_ms is not None else "none"
    delays = ("no queue delay" if space["delays"] == [0] else
              f"queue delay {', '.join(map(str, space['delays']))} us for mnist-etc, none for Model Analyzer, whose "
              f"automatic search does not vary it")
    lines = [f"Space: instances 1..{space['instances']} x max batch size 1..{space['batch']} (powers of 2, "
             f"dynamic batching, {delays}) x concurrency 1..{space['concurrency']} (powers of 2), 1 image per "
             f"request, gRPC, p99 budget {budget}; model: {origin}. Machine: {machine}; load average (1/5/15 min) "
             + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in loads.items()) + ".", "",
             "| tool | wall time | points | best found (its own figure) | re-measured: images/s, median [min, max] "
             "| re-measured: p99 ms, median [min, max] |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        t, p = row["remeasured_throughput"], row["remeasured_p99_ms"]
        lines.append(f"| {row['tool']} | {row['wall_seconds']:.0f} s | {row['points']} | {row['best']}: "
                     f"{row['own_throughput']:,.0f}/s at p99 {row['own_p99_ms']:.2f} ms | "
                     + (f"{t[0]:,.0f} [{t[1]:,.0f}, {t[2]:,.0f}]" if t else "failed") + " | "
                     + (f"{p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}]" if p else "-") + " |")
    for name, r in refused.items():
        lines.append(f"| {r['tool']} | {r['wall_seconds']:.0f} s | {r['points']} | no result: {r['error']} | - | - |")
    ratios = {name: ours["wall_seconds"] / r["wall_seconds"] for name, r in picks.items()
              if name.startswith("Model Analyzer")}
    lines += ["", "mnist-etc wall time over each Model Analyzer mode's: "
              + ", ".join(f"{name} {v:.2f}" for name, v in ratios.items())
              + f"; re-measured {args.rounds} times each with the same perf_analyzer command "
                f"({args.remeasure_interval_ms} ms windows, 10% stability, at most 5 windows, p99 stability), "
                f"rotating the order.", ""]
    lines += [f"- {name}: `{r['command']}` (config {r['config']})" for name, r in {**picks, **refused}.items()
              if name.startswith("Model Analyzer")]
    lines += [f"- {name}: `{r['command']}`" for name, r in picks.items() if name.startswith("mnist-etc")]
    text = "\n".join(lines) + "\n"
    (out / "comparison.md").write_text(text)
    (out / "comparison.json").write_text(json.dumps({"machine": machine, "loads": loads, "space": space,
                                                     "budget_ms": args.budget_ms, "model": origin, "picks": picks,
                                                     "refused": refused, "rows": rows, "ratios": ratios},
                                                    indent=2, default=str))
    print("\n" + text)
    log(f"written {out / 'comparison.md'}")


if __name__ == "__main__":
    main()
