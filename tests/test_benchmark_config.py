"""Benchmark grid validation, precedence, strategies, CSV parsing and analysis (no server, seconds)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mnist_etc.benchmark.analysis import analyse
from mnist_etc.benchmark.axes import expand
from mnist_etc.benchmark.grid import BenchmarkSpec, load_grid, resolve_spec, spec_from_mapping
from mnist_etc.benchmark.perf import PerfFailure, classify_failure, parse_perf_csv
from mnist_etc.benchmark.reconfigure import same_serving_config
from mnist_etc.benchmark.results import FAILED, OK, PointResult
from mnist_etc.benchmark.run import RunOptions
from mnist_etc.benchmark.strategies import Point, make_strategy, plan_configs
from mnist_etc.errors import UserError
from mnist_etc.triton.model_config import TritonModelConfig

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: object, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("data, fragment", [
    ({"fixed": {"max_batch_size": 64}, "grid": {"preferred_batch_size": [[8, 128]]}},
     "preferred_batch_size must be an integer in 1..64, got 128"),
    ({"grid": {"max_batch_size": [8, 64]}, "fixed": {"preferred_batch_size": [16]}},
     "configuration (max_batch_size=8): each preferred_batch_size must be an integer in 1..8, got 16"),
    ({"grid": {"instance_count": [1, 0]}}, "grid.instance_count[1] must be an integer >= 1, got 0"),
    ({"grid": {"max_queue_delay_microseconds": [-1]}},
     "grid.max_queue_delay_microseconds[0] must be an integer >= 0, got -1"),
    ({"concurrency": [0, 4]}, ": concurrency[0] must be an integer >= 1, got 0"),
    ({"grid": {"instance_count": [1], "concurrency": "0:2"}}, "grid.concurrency[0] must be an integer >= 1, got 0"),
    ({"concurrency": "6:3"}, "concurrency range '6:3' is not accepted"),
    ({"concurrency": [4, 4]}, "concurrency must not repeat a value"),
    ({"concurency": [4]}, "unknown key 'concurency'; accepted: name, description, model"),
    ({"grid": {"instances": [1, 2]}}, "grid: unknown key 'instances'; accepted: instance_count"),
    ({"grid": {"version_policy": ["all"]}}, "grid: unknown key 'version_policy'"),
    ({"fixed": {"max_batch_sise": 8}}, "fixed: unknown key 'max_batch_sise'; accepted: max_batch_size"),
    ({"measurement": {"interval": 500}}, "measurement: unknown key 'interval'; accepted: interval_ms"),
    ({"measurement": {"max_trials": 2}}, "measurement.max_trials must be an integer >= 3"),
    ({"measurement": {"interval_ms": 50}}, "measurement.interval_ms must be an integer >= 100"),
    ({"measurement": {"stability_percentage": 0}}, "measurement.stability_percentage must be a finite number > 0, got 0"),
    ({"request_batch_size": 16, "fixed": {"max_batch_size": 8}},
     "request_batch_size 16 exceeds max_batch_size 8"),
    ({"request_batch_size": 0}, "request_batch_size must be an integer >= 1, got 0"),
    ({"grid": {"instance_count": [1, 2]}, "fixed": {"instance_count": 2}},
     "grid sweeps instance_count, which 'fixed' also sets"),
    ({"grid": {"preferred_batch_size": [8, 16]}}, "grid.preferred_batch_size[0] must be one choice of preferred batch sizes, a list such as"),
    ({"grid": [{"instance_count": [1]}, {"dynamic_batching": [False], "max_queue_delay_microseconds": [5]}],
      "fixed": {"preferred_batch_size": [8]}}, "grid[1] configuration"),
    ({"grid": {"instance_kind": ["KIND_TPU"]}}, "grid.instance_kind[0] must be one of KIND_CPU, KIND_GPU, got 'KIND_TPU'"),
    ({"protocol": "udp"}, "protocol must be one of grpc, http, got 'udp'"),
    ({"objective": "latency"}, "objective must be one of throughput, throughput_per_instance, efficiency"),
    ({"strategy": "optuna"}, "strategy.name must be one of adaptive, brute, prune_over_budget, got 'optuna'."),
    ({"strategy": {"name": "adaptive", "options": {"repeat": 5}}},
     "strategy.options: unknown key 'repeat'; accepted: screen, screen_interval_ms, min_gain, finalists, repeats, confirm_windows, refine, time_budget_s."),
    ({"strategy": {"name": "brute", "options": {"repeats": 5}}}, "strategy.options: unknown key 'repeats'; accepted: "
                                                                  "none."),
    ({"strategy": {"name": "adaptive", "options": {"repeats": -1}}},
     "strategy.options.repeats must be an integer >= 0, got -1."),
    ({"strategy": "prune_over_budget"}, "strategy prune_over_budget needs a p99_budget_ms"),
    ({"p99_budget_ms": 0}, "p99_budget_ms must be a finite number > 0 or null, got 0"),
    ({"baseline": "previous"}, "baseline must be one of current, defaults or a mapping"),
    ({"baseline": {"instance_count": 0}}, "baseline.instance_count must be an integer >= 1, got 0"),
    ({"model": "../etc"}, "model name '../etc' is not accepted"),
    ({"name": "a/b"}, "benchmark name 'a/b' is not accepted"),
    ({"version": 0}, "version must be an integer >= 1 or null, got 0"),
    ({"grid": []}, "grid must be one sub-grid (a mapping of axis -> values) or a non-empty list"),
    ({"grid": {"max_queue_delay_microseconds": [100, 500]}, "fixed": {"dynamic_batching": False}},
     "holds two configurations that Triton serves identically (max_queue_delay_microseconds 100 vs 500)"),
    ({"grid": {"preferred_batch_size": [[], [64]]}}, "serves identically (preferred_batch_size [] vs [64])"),
    # Nested keys are named by their path.
    ({"grid": [{"instance_count": [1]}, {"instance_count": [2, 0]}]}, "grid[1].instance_count[1] must be an integer "
                                                                     ">= 1, got 0."),
    ({"grid": [{"instance_count": [1]}, {"instances": [2]}]}, "grid[1]: unknown key 'instances'"),
    ({"grid": {"preferred_batch_size": [[8, 0]]}}, "grid.preferred_batch_size[0][1] must be an integer >= 1, got 0."),
    ({"fixed": {"max_batch_size": 0}}, "fixed.max_batch_size must be an integer >= 1 or null, got 0."),
    ({"fixed": {"preferred_batch_size": [8, 8]}}, "fixed.preferred_batch_size must not repeat a value, got [8, 8]."),
    ({"measurement": {"interval_ms": 1000.0}}, "measurement.interval_ms must be an integer >= 100 (milliseconds per "
                                               "window), got 1000.0."),
    ({"measurement": {"percentile": 100}}, "measurement.percentile must be an integer in 1..99 or null, got 100."),
    ({"baseline": {"instance_kind": "KIND_TPU"}}, "baseline.instance_kind must be one of KIND_CPU, KIND_GPU"),
    ({"grid": {"dynamic_batching": ["yes"]}}, "grid.dynamic_batching[0] must be true or false, got 'yes'."),
])
def test_bad_grids_get_one_sentence_naming_the_file(tmp_path, data, fragment):
    path = write(tmp_path, data)
    with pytest.raises(UserError) as err:
        load_grid(path)
    message = str(err.value)
    assert fragment in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_yaml_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"not valid YAML at line \d+ \(expected"):
        load_grid(write(tmp_path, "grid:\n  instance_count: [1, 2\n"))
    with pytest.raises(UserError, match="does not exist"):
        load_grid(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="must be a mapping of BenchmarkSpec settings"):
        load_grid(write(tmp_path, "- 1\n- 2\n"))


def test_duplicate_keys_in_a_grid_file_are_refused(tmp_path, capsys):
    path = write(tmp_path, "grid:\n  instance_count: [1, 2]\n  instance_count: [4]\nconcurrency: [4]\n")
    with pytest.raises(UserError) as err:
        load_grid(path)
    assert str(err.value) == f"{path}: duplicate key 'instance_count' at line 3; give each key once."
    top = write(tmp_path, "measurement: {interval_ms: 1000}\nmeasurement: {max_trials: 5}\n", "top.yaml")
    with pytest.raises(UserError, match="duplicate key 'measurement' at line 2"):
        load_grid(top)
    from mnist_etc_cli.main import main

    assert main(["benchmark", "--grid", str(path), "--dry-run"]) == 2
    err_text = capsys.readouterr().err.strip()
    assert "duplicate key 'instance_count'" in err_text and len(err_text.splitlines()) == 1


def test_overrides_are_one_typed_model_shared_by_cli_and_flow():
    from mnist_etc.benchmark.grid import BenchmarkOverrides

    over = BenchmarkOverrides.parse({"concurrency": "3:4", "preferred_batch_size": ["8,16", "none"],
                                     "baseline": {"instance_count": 2}})
    assert over.concurrency == (3, 4) and over.preferred_batch_size == ((8, 16), ())
    assert over.to_dict() == {"concurrency": [3, 4], "preferred_batch_size": [[8, 16], []],
                              "baseline": TritonModelConfig(instance_count=2).to_dict()}
    spec = BenchmarkSpec().with_overrides(over)
    assert spec.baseline == TritonModelConfig(instance_count=2) and spec.n_points() == 4
    with pytest.raises(UserError, match=r"^overrides: max_trials must be an integer >= 3 "):
        BenchmarkSpec().with_overrides(max_trials=2)
    # The spec records itself as a mapping that reads back as the same spec.
    seed = load_grid(ROOT / "search_spaces" / "benchmark_seed.yaml")
    assert spec_from_mapping(seed.to_dict()) == seed and seed.to_dict()["fixed"] == {
        "max_batch_size": 64, "preferred_batch_size": [8, 16, 32, 64], "preserve_ordering": True}


@pytest.mark.parametrize("kwargs, fragment", [
    ({"run": "../escape"}, "run name '../escape' is not accepted"),
    ({"url": "http://127.0.0.1:8000"}, "url must be HOST:PORT"),
    ({"url": "127.0.0.1"}, "url must be HOST:PORT"),
])
def test_bad_run_options(kwargs, fragment):
    with pytest.raises(UserError) as err:
        RunOptions(**kwargs)
    assert fragment in str(err.value)


def test_int_lists_and_ranges():
    assert expand("3:6,20") == [3, 4, 5, 6, 20]
    assert expand("1:9:4") == [1, 5, 9]
    assert expand("true,KIND_GPU") == [True, "KIND_GPU"]
    assert BenchmarkSpec(concurrency=4).concurrency == (4,)
    assert BenchmarkSpec(concurrency=[1, "2:3"]).concurrency == (1, 2, 3)
    assert BenchmarkSpec(concurrency="3:6,20").concurrency == (3, 4, 5, 6, 20)
    with pytest.raises(UserError, match=r"concurrency\[0\] must be an integer >= 1, got True"):
        BenchmarkSpec(concurrency=[True])


def test_seed_grid_reproduces_the_course_projects_experiments():
    spec = load_grid(ROOT / "search_spaces" / "benchmark_seed.yaml")
    points = {(cfg.instance_count, cfg.max_queue_delay_microseconds): conc for cfg, conc in spec.configs()}
    assert points[(2, 500)] == (3, 4, 5, 6, 20)            # the shared point is merged, measured once
    assert {d for (n, d) in points if n == 4} == {1, 20, 100, 250, 500, 5000, 10000}
    assert {d for (n, d) in points if n == 1} == {10, 250, 500, 2000}
    assert {d for (n, d) in points if n == 2} == {250, 500, 2000}
    assert spec.n_points() == 18 and spec.request_batch_size == 5
    cfg = spec.configs()[0][0]
    assert (cfg.max_batch_size, cfg.preferred_batch_size, cfg.preserve_ordering) == (64, (8, 16, 32, 64), True)
    smoke = load_grid(ROOT / "search_spaces" / "benchmark_smoke.yaml")
    assert smoke.name == "smoke" and smoke.n_points() <= 12


def test_command_line_over_yaml_over_default(tmp_path):
    path = write(tmp_path, {"grid": [{"instance_count": [1, 2], "concurrency": [3]}, {"instance_count": [4]}],
                            "fixed": {"max_queue_delay_microseconds": 100}, "concurrency": [8],
                            "measurement": {"interval_ms": 1000}})
    spec = load_grid(path)
    assert [(c.instance_count, conc) for c, conc in spec.configs()] == [(1, (3,)), (2, (3,)), (4, (8,))]
    assert spec.measurement.max_trials == 10 and spec.protocol == "grpc"          # defaults
    over = resolve_spec(path, instance_count="4", max_queue_delay_microseconds=[500, 1000], concurrency="20",
                        max_trials=5, protocol=None)
    assert [(c.instance_count, c.max_queue_delay_microseconds, conc) for c, conc in over.configs()] == \
        [(4, 500, (20,)), (4, 1000, (20,))]                                           # sub-grids merged
    assert over.measurement.interval_ms == 1000 and over.measurement.max_trials == 5
    assert over.protocol == "grpc"                                                   # None = not given
    with pytest.raises(UserError, match=r"^overrides: instance_count\[0\] must be an integer >= 1, got 0\.$"):
        resolve_spec(path, instance_count="0")
    with pytest.raises(UserError, match="overrides: unknown key 'instances'; accepted: model, version"):
        BenchmarkSpec().with_overrides(instances=[1])


def test_preferred_batch_choices_and_defaults():
    spec = spec_from_mapping({"grid": {"preferred_batch_size": [[], [8, 16]]}})
    assert [c.preferred_batch_size for c, _ in spec.configs()] == [(), (8, 16)]
    assert BenchmarkSpec().configs() == [(TritonModelConfig(), (1, 2, 4, 8))]


def test_baseline_is_measured_first_and_merged_with_an_equal_grid_config():
    grid = [(TritonModelConfig(instance_count=2), (4,)), (TritonModelConfig(), (16,))]
    current = TritonModelConfig(preferred_batch_size=(64,))   # as Triton reports the default back
    plan = plan_configs(grid, current, (4, 16))
    assert [(cid, cfg.instance_count, conc, base) for cid, cfg, conc, base in plan] == \
        [(0, 1, (4, 16), True), (1, 2, (4,), False)]


def _result(index: int, point: Point, throughput: float | None, p99: float | None) -> PointResult:
    from mnist_etc.benchmark.perf import PerfMeasurement

    if throughput is None:
        return PointResult(index, point, FAILED, "unstable", "unstable measurement")
    m = PerfMeasurement(point.concurrency, throughput, p99 / 3, p99 / 2, p99 / 1.5, p99, 0, 0, 0.1, 0, 0.5, 0, 0)
    return PointResult(index, point, OK, measurement=m, config_verified=True)


def test_prune_strategy_skips_higher_concurrencies_over_budget():
    base, other = TritonModelConfig(), TritonModelConfig(instance_count=2)
    plan = plan_configs([(other, (2, 4, 8))], base, (2, 4, 8))
    strategy = make_strategy("prune_over_budget", plan, budget_ms=10)
    measured = []
    for point in strategy.get_configs():
        p99 = {2: 5.0, 4: 12.0, 8: 20.0}[point.concurrency]
        r = _result(len(measured), point, 1000.0 * point.concurrency, p99)
        measured.append(r)
        strategy.set_last_results([r])
    assert [(p.config_id, p.concurrency) for p in (r.point for r in measured)] == \
        [(0, 2), (0, 4), (0, 8), (1, 2), (1, 4)]                 # baseline in full, config 1 stops at c=4
    assert [(p.concurrency, "12.00 ms" in why) for p, why in strategy.skipped] == [(8, True)]
    assert make_strategy("brute", plan).planned == 6


def test_best_under_budget_and_improvement_over_baseline():
    base, good = TritonModelConfig(), TritonModelConfig(instance_count=2)
    pts = [Point(0, base, 4, True), Point(0, base, 16, True), Point(1, good, 4), Point(1, good, 16),
           Point(1, good, 32)]
    results = [_result(0, pts[0], 1000, 5), _result(1, pts[1], 2000, 30), _result(2, pts[2], 1500, 6),
               _result(3, pts[3], 3000, 9), _result(4, pts[4], None, None)]
    a = analyse(results, "throughput", 10.0, ceiling_ips=4000.0)
    assert a.best.results == (results[3],) and a.baseline_best.results == (results[0],)
    assert a.improvement == pytest.approx(2.0)                    # 3000 vs the baseline's 1000 under 10 ms
    assert a.baseline_same_concurrency.results == (results[1],)
    assert (a.n_ok, a.n_failed, a.n_within_budget, a.verdict) == (4, 1, 3, "met")
    assert a.best.efficiency(4000.0) == pytest.approx(0.75)
    per_instance = analyse(results, "throughput_per_instance", 10.0, 4000.0)
    assert per_instance.best.results == (results[3],)             # 1500 per instance beats 1000
    nothing = analyse(results, "throughput", 1.0, 4000.0)
    assert nothing.best is None and nothing.verdict == "not_met" and nothing.closest.results == (results[0],)
    assert analyse(results, "throughput", None, 4000.0).best.results == (results[3],)


def test_the_final_ranking_rests_on_the_re_measured_medians():
    """A lucky screening figure does not win over re-measured ones; a re-measured figure is the median of its
    confirm runs only, with their range."""
    a_cfg, b_cfg, lucky = TritonModelConfig(), TritonModelConfig(instance_count=2), TritonModelConfig(max_batch_size=8)
    rs = [_result(0, Point(0, a_cfg, 8, phase="screen"), 900, 5), _result(1, Point(1, b_cfg, 8, phase="screen"), 1000, 5),
          _result(2, Point(2, lucky, 8, phase="screen"), 5000, 5)]
    for i, (cid, cfg, t) in enumerate([(0, a_cfg, 1100), (1, b_cfg, 1000), (0, a_cfg, 1200), (1, b_cfg, 990),
                                      (0, a_cfg, 700), (1, b_cfg, 1010)]):
        rs.append(_result(3 + i, Point(cid, cfg, 8, phase="confirm", repeat=i // 2), t, 5))
    a = analyse(rs, "throughput", 10.0, None)
    assert a.best.point.config == a_cfg and a.best.throughput == 1100 and a.best.throughput_range == (700, 1200)
    assert a.clear_gain(None) is None                             # no baseline to compare with
    assert [f.point.config_id for f in a.ranking] == [0, 1] and len(a.best.results) == 3
    assert a.to_dict(None)["best"]["measurements"] == 3


# The header and a row exactly as perf_analyzer 2.51 writes them with -f (microseconds).
PERF_CSV = ("Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
            "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
            "4,9642.56,4,1110,258,26,506,160,1,1389,3331,5850,12338\n")


def test_perf_csv_is_parsed_into_milliseconds():
    m = parse_perf_csv(PERF_CSV, 4)
    assert m.throughput == pytest.approx(9642.56)
    assert (m.p50_ms, m.p99_ms, m.server_queue_ms, m.server_compute_infer_ms) == (1.389, 12.338, 0.258, 0.506)
    with pytest.raises(PerfFailure, match="no row for concurrency 8"):
        parse_perf_csv(PERF_CSV, 8)
    with pytest.raises(PerfFailure, match="lacks"):
        parse_perf_csv("Concurrency,Inferences/Second\n4,1\n", 4)


# perf_analyzer 2.51's verbose output (-v --percentile 99) for a point that never settled, as recorded here.
UNSETTLED = """Request concurrency: 4
  Pass [1] throughput: 2389.09 infer/sec. p99 latency: 6501 usec
  Pass [2] throughput: 2354.3 infer/sec. p99 latency: 3704 usec
  Pass [3] throughput: 2507.44 infer/sec. p99 latency: 3406 usec
  Pass [4] throughput: 2486.09 infer/sec. p99 latency: 2218 usec
  Pass [5] throughput: 2586.3 infer/sec. p99 latency: 2375 usec
  Pass [6] throughput: 2694.08 infer/sec. p99 latency: 2036 usec
Failed to obtain stable measurement within 6 measurement windows for concurrency 4. Please try to increase the \
--measurement-interval.
"""


def test_an_unsettled_point_keeps_the_median_and_spread_of_its_windows():
    from mnist_etc.benchmark.perf import parse_windows, settled_measurement, unsettled_measurement

    windows = parse_windows(UNSETTLED)
    assert len(windows) == 6 and windows[0].percentile == 99 and windows[0].latency_ms == 6.501
    m = unsettled_measurement(4, windows, 3.7)
    assert (m.settled, m.windows, m.seconds) == (False, 6, 3.7)
    assert m.throughput == pytest.approx((2486.09 + 2507.44) / 2) and m.p99_ms == pytest.approx((2.375 + 3.406) / 2)
    assert m.throughput_spread == pytest.approx((2694.08 - 2354.3) / m.throughput)
    assert m.p50_ms != m.p50_ms                                      # unknown (NaN): perf_analyzer did not say
    settled = settled_measurement(parse_perf_csv(PERF_CSV, 4), windows, 2.0)
    assert settled.settled and settled.throughput == pytest.approx(9642.56)          # its own merged figure
    assert settled.p99_spread == pytest.approx((2.375 - 2.036) / 2.218)              # over its last 3 windows
    mean_only = parse_windows("  Pass [1] throughput: 4160.77 infer/sec. Avg latency: 1915 usec (std 932 usec). \n")
    assert mean_only[0].percentile is None and mean_only[0].latency_ms == 1.915


def test_perf_failures_are_classified():
    from mnist_etc.benchmark.grid import MeasurementSettings

    s = MeasurementSettings(interval_ms=1000, stability_percentage=20, max_trials=6)
    unstable = ("Request concurrency: 16\nFailed to obtain stable measurement within 6 measurement windows for "
                "concurrency 16. Please try to increase the --measurement-interval.\n")
    assert classify_failure(2, unstable, s).kind == "unstable"
    reset = ("Failed to maintain requested inference load. Worker thread(s) failed to generate concurrent requests.\n"
             "Thread [0] had error: recvmsg:Connection reset by peer\n")
    failure = classify_failure(99, reset, s)
    assert failure.kind == "requests_failed" and "Connection reset by peer" in failure.reason


def test_serving_config_comparison_follows_tritons_completion():
    assert same_serving_config(TritonModelConfig(), TritonModelConfig(preferred_batch_size=(64,)))
    # Triton drops the batcher's settings when dynamic batching is off.
    off = TritonModelConfig(dynamic_batching=False)
    assert same_serving_config(off, off.replace(max_queue_delay_microseconds=0))
    assert not same_serving_config(TritonModelConfig(), TritonModelConfig(instance_count=2))


def test_adopt_takes_tuned_settings_and_keeps_the_previous_config(tmp_path):
    import json

    from mnist_etc.benchmark.adopt import adopt_best, write_candidate
    from mnist_etc.triton.repository import read_config, write_config

    repo = tmp_path / "repo"
    write_config(repo, "m", "python", TritonModelConfig(version_policy="all"))
    best = TritonModelConfig(instance_count=2, max_queue_delay_microseconds=100, preferred_batch_size=(8, 16))
    candidate = write_candidate(repo, "m", "python", best, "r1")
    assert candidate == repo / "m" / "configs" / "benchmark-r1.pbtxt"
    assert read_config(repo, "m") == TritonModelConfig(version_policy="all")     # config.pbtxt untouched
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best.json").write_text(json.dumps({"run": "r1", "model": "m", "backend": "python",
                                                   "repository": str(repo),
                                                   "analysis": {"best": {"config": best.to_dict()}}}))
    out = adopt_best(run_dir)
    adopted = read_config(repo, "m")
    assert adopted == best.replace(version_policy="all")        # deployment setting kept, tuned ones taken
    from mnist_etc.triton.model_config import parse_pbtxt

    previous = TritonModelConfig.from_proto(parse_pbtxt(Path(out["backup"]).read_text()))
    assert previous == TritonModelConfig(version_policy="all")
    (run_dir / "best.json").write_text(json.dumps({"run": "r2", "model": "m", "backend": "python",
                                                   "repository": str(repo), "analysis": {"best": None}}))
    with pytest.raises(UserError, match="nothing to adopt"):
        adopt_best(run_dir)
    with pytest.raises(UserError, match="not a finished benchmark run"):
        adopt_best(tmp_path / "missing")


def test_cli_rejects_bad_grid_before_any_work(tmp_path, capsys):
    from mnist_etc_cli.main import main

    path = write(tmp_path, {"grid": {"instance_count": [0]}})
    artifacts = tmp_path / "artifacts"
    code = main(["benchmark", "--grid", str(path), "--artifacts", str(artifacts), "--no-prefect"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("mnist-etc benchmark: error:") and "grid.instance_count[0] must be an integer >= 1, got 0." in err
    assert len(err.splitlines()) == 1
    assert not artifacts.exists()                                 # nothing half-written
    assert main(["benchmark", "--concurrency", "0", "--artifacts", str(artifacts)]) == 2
    assert main(["benchmark", "--preferred-batch-size", "8,128", "--artifacts", str(artifacts)]) == 2
    assert "preferred_batch_size must be an integer in 1..64, got 128" in capsys.readouterr().err
    # Strategy options on the command line: NAME:KEY=VALUE,...; an unknown one is one sentence naming it.
    assert main(["benchmark", "--strategy", "adaptive:repeat=5", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == ("mnist-etc benchmark: error: strategy.options: unknown key 'repeat'; "
                                               "accepted: screen, screen_interval_ms, min_gain, finalists, repeats, confirm_windows, refine, time_budget_s.")
    assert main(["benchmark", "--strategy", "brute:repeats=5", "--dry-run"]) == 2
    assert "strategy.options: unknown key 'repeats'; accepted: none." in capsys.readouterr().err
    assert main(["benchmark", "--strategy", "adaptive:finalists=2,repeats=5", "--dry-run"]) == 0
    assert "strategy adaptive (screen climb, screen_interval_ms 1000, min_gain 0.02, finalists 2, repeats 5" in capsys.readouterr().out


def test_cli_dry_run_lists_points_without_a_server(capsys):
    from mnist_etc_cli.main import main

    grid = ROOT / "search_spaces" / "benchmark_seed.yaml"
    assert main(["benchmark", "--grid", str(grid), "--dry-run", "--instance-count", "1,2,4",
                 "--max-queue-delay-us", "500", "--concurrency", "20"]) == 0
    out = capsys.readouterr().out
    assert "3 point(s)" in out and "n=4 delay_us=500" in out and "concurrency 20" in out
