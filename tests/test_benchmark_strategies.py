"""Search strategies driven through their interface with recorded results (no server, milliseconds).

`serve` below stands in for the measuring loop: it answers each point the strategy hands out from a table
of figures shaped like the real ones (throughput grows with concurrency until the configuration saturates,
p99 grows with it), which is exactly what get_configs()/set_last_results() exchange in a run.
"""
from __future__ import annotations

import pytest

from mnist_etc.benchmark.analysis import analyse
from mnist_etc.benchmark.perf import MeasurementSettings, PerfMeasurement
from mnist_etc.benchmark.results import FAILED, OK, PointResult
from mnist_etc.benchmark.strategies import AdaptiveOptions, Point, make_strategy, plan_configs
from mnist_etc.benchmark.strategies.adaptive import AdaptiveSettings
from mnist_etc.triton.model_config import TritonModelConfig

CONC = (1, 2, 4, 8, 16, 32)


def space(counts=(1, 2), sizes=(1, 4, 16, 64)) -> list[tuple[TritonModelConfig, tuple[int, ...]]]:
    return [(TritonModelConfig(instance_count=n, max_batch_size=m, max_queue_delay_microseconds=0), CONC)
            for n in counts for m in sizes]


def capacity(cfg: TritonModelConfig) -> float:
    """Requests in flight at which the configuration saturates (more batching, more instances: later)."""
    return 2 * cfg.instance_count * cfg.max_batch_size ** 0.5


def figures_of(point: Point) -> tuple[float, float]:
    cfg, c = point.config, point.concurrency
    throughput = 1000.0 * min(c, capacity(cfg)) * (1 + 0.1 * cfg.instance_count) + 10.0 * c
    return throughput, 2000.0 * c / throughput + 0.1 * c    # Little's law (p99 ~ twice the mean) and some queueing


def serve(strategy, refuse=(), unsettled=(), figures=figures_of) -> list[PointResult]:
    """The measuring loop: every point the strategy asks for, answered from the table above."""
    results = []
    for point in strategy.get_configs():
        index = len(results)
        if point.config.max_batch_size in refuse:
            r = PointResult(index, point, FAILED, "load_refused", "Triton refused the configuration")
        else:
            t, p99 = figures(point)
            if point.phase == "confirm":      # re-measurements scatter a little around the truth
                t *= (0.98, 1.0, 1.02)[point.repeat % 3]
            settled = point.config.max_batch_size not in unsettled
            m = PerfMeasurement(point.concurrency, t, p99 / 2, p99 / 1.5, p99 / 1.2, p99, 0, 0, 0, 0, 0, 0, 0,
                                settled=settled, windows=3 if settled else 10, throughput_spread=0.05)
            r = PointResult(index, point, OK, measurement=m, config_verified=True)
        results.append(r)
        strategy.set_last_results([r])
    return results


def adaptive(plan, budget_ms=None, **options):
    settings = AdaptiveSettings(name="adaptive", options=AdaptiveOptions(**options))
    return make_strategy(settings, plan, budget_ms, "throughput", MeasurementSettings(interval_ms=2000))


def true_best(configs, budget_ms, figures=figures_of):
    best = None
    for cfg, conc in configs:
        for c in conc:
            t, p99 = figures(Point(0, cfg, c))
            if (budget_ms is None or p99 <= budget_ms) and (best is None or t > best[0]):
                best = (t, cfg, c)
    return best


def test_adaptive_descend_screens_each_config_once_and_confirms_the_finalists():
    configs = space()
    strategy = adaptive(plan_configs(configs, None, ()), screen="descend", finalists=3, repeats=3, confirm_windows=10)
    results = serve(strategy)
    phases = [r.point.phase for r in results]
    # 8 configurations screened at their top concurrency, 3 finalists refined one step down (no gain there),
    # then 3 rounds over the 3 finalists, interleaved: 20 measurements where brute force makes 48.
    assert phases == ["screen"] * 8 + ["refine"] * 3 + ["confirm"] * 9
    assert {r.point.concurrency for r in results if r.point.phase == "screen"} == {32}
    confirm = [r.point for r in results if r.point.phase == "confirm"]
    assert [p.config_id for p in confirm[:3]] == [p.config_id for p in confirm[3:6]][::-1]     # A B C, C B A
    assert [p.repeat for p in confirm] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    screen = next(r for r in results if r.point.phase == "screen")
    assert screen.point.measurement.interval_ms == 1000 and screen.point.measurement.max_trials == 3
    assert confirm[0].measurement is None                          # the grid's own settings
    a = analyse(results + [PointResult(len(results), p, "skipped", "skipped", why) for p, why in strategy.skipped],
                "throughput", None, None)
    t, cfg, c = true_best(configs, None)
    assert (a.best.point.config, a.best.point.concurrency) == (cfg, c) and a.best.throughput == pytest.approx(t)
    assert len(a.best.results) == 3 and len(a.ranking) == 3
    assert len(strategy.skipped) == 48 - 11
    assert all("a lower concurrency is not expected to serve more" in why for _, why in strategy.skipped)


def test_a_budget_is_found_by_binary_search_from_the_top():
    configs = space(counts=(1,), sizes=(4,))
    budget = 6.0          # this configuration saturates at 4 requests in flight; its p99 fits up to c = 8
    strategy = adaptive(plan_configs(configs, None, ()), budget, screen="descend")
    results = serve(strategy)
    # p99 16.8 ms at 32, so the guess is 32 x 6 / 16.8 = 11: 8 fits, and 16 (between 8 and 32) does not.
    assert [r.point.concurrency for r in results if r.point.phase == "screen"] == [32, 8, 16]
    fitting = [c for c in CONC if figures_of(Point(0, configs[0][0], c))[1] <= budget]
    a = analyse(results, "throughput", budget, None)
    assert a.best.point.concurrency == max(fitting) == 8 and a.verdict == "met" and len(a.best.results) == 2
    assert [r.point.concurrency for r in results if r.point.phase == "refine"] == [4]   # one below: no gain
    assert dict((p.concurrency, why) for p, why in strategy.skipped) == {
        c: "not measured: concurrency 8 serves 4,480 images/s within the budget; a lower concurrency is not "
           "expected to serve more" for c in (1, 2)}


def test_the_baseline_is_re_measured_beside_the_finalists():
    configs = space(counts=(2,), sizes=(16, 64))
    base = TritonModelConfig(max_batch_size=4, max_queue_delay_microseconds=0)
    strategy = adaptive(plan_configs(configs, base, CONC), screen="descend", finalists=1, refine=False)
    results = serve(strategy)
    confirm = [r.point for r in results if r.point.phase == "confirm"]
    assert {p.config_id for p in confirm} == {0, 2} and confirm[0].baseline is False   # finalist, then baseline
    a = analyse(results, "throughput", None, None)
    assert a.baseline_best.repeated and a.improvement is not None and a.improvement > 0
    assert a.clear_gain(None) is True                             # its worst re-measurement beats the baseline's best


def test_no_config_meets_the_budget_the_best_effort_is_re_measured():
    configs = space(counts=(1,), sizes=(1, 4))
    strategy = adaptive(plan_configs(configs, None, ()), 0.01, screen="descend", finalists=1, repeats=3)
    results = serve(strategy)
    a = analyse(results, "throughput", 0.01, None)
    assert a.verdict == "not_met" and a.best is None
    assert a.closest.point.concurrency == 1 and a.closest.repeated    # the lowest p99, measured 3 more times


def test_a_refused_config_is_dropped_and_an_unsettled_point_still_counts():
    configs = space(counts=(1,), sizes=(1, 4, 64))
    strategy = adaptive(plan_configs(configs, None, ()), screen="descend")
    results = serve(strategy, refuse=(4,), unsettled=(64,))
    refused = [r for r in results if r.point.config.max_batch_size == 4]
    assert len(refused) == 1 and refused[0].failure == "load_refused"
    assert all("failed at concurrency 32 (load_refused)" in why for p, why in strategy.skipped
               if p.config.max_batch_size == 4)
    a = analyse(results, "throughput", None, None)
    assert a.best.point.config.max_batch_size == 64 and not a.best.settled and a.n_unsettled >= 3


def test_screen_all_measures_every_point_up_to_the_budget():
    configs = space(counts=(1,), sizes=(4,))
    strategy = adaptive(plan_configs(configs, None, ()), 6.0, screen="all", repeats=0)
    results = serve(strategy)
    assert [r.point.concurrency for r in results] == [1, 2, 4, 8, 16]    # 16 is over budget: 32 not measured
    assert [p.concurrency for p, _ in strategy.skipped] == [32]
    assert all("already exceeds the 6 ms budget" in why for _, why in strategy.skipped)


def test_brute_and_prune_are_still_there():
    plan = plan_configs(space(counts=(1,), sizes=(4,)), None, ())
    assert len(serve(make_strategy("brute", plan))) == 6
    prune = make_strategy("prune_over_budget", plan, budget_ms=6.0)
    assert [r.point.concurrency for r in serve(prune)] == [1, 2, 4, 8, 16]


# -- the hill climb (screen: climb, the default) ------------------------------------------------------------

LARGE_CONC = (1, 2, 4, 8, 16, 32, 64, 128)


def large_space() -> list[tuple[TritonModelConfig, tuple[int, ...]]]:
    """The issue's large space: instances 1-4 x max batch size 1-128 x queue delay {0, 100, 500, 2000} us."""
    return [(TritonModelConfig(instance_count=n, max_batch_size=m, max_queue_delay_microseconds=d), LARGE_CONC)
            for n in (1, 2, 3, 4) for m in (1, 2, 4, 8, 16, 32, 64, 128) for d in (0, 100, 500, 2000)]


def two_core_figures(point: Point) -> tuple[float, float]:
    """Shaped like the served model on 2 cores: batches no larger than the requests in flight, two instances
    best (more contend for the cores), a short queue delay helps a little and a long one costs latency."""
    cfg, c = point.config, point.concurrency
    batch = min(cfg.max_batch_size, c)
    cores = min(cfg.instance_count, 2) - 0.3 * max(0, cfg.instance_count - 2)
    delay = {0: 1.0, 100: 1.06, 500: 1.03, 2000: 0.95}[cfg.max_queue_delay_microseconds]
    capacity = 900.0 * cores * batch ** 0.5 * delay
    throughput = min(400.0 * c, capacity)
    return throughput, 2000.0 * c / throughput + cfg.max_queue_delay_microseconds / 1000


def test_the_climb_finds_the_best_of_a_large_space_in_a_few_dozen_measurements():
    configs = large_space()
    base = TritonModelConfig(instance_count=1, max_batch_size=64, max_queue_delay_microseconds=0)
    budget = 20.0
    strategy = adaptive(plan_configs(configs, base, LARGE_CONC), budget)
    results = serve(strategy, figures=two_core_figures)
    a = analyse(results, "throughput", budget, None)
    t, cfg, c = true_best(configs, budget, two_core_figures)
    assert a.best.point.config.model_dump(include={"instance_count", "max_queue_delay_microseconds"}) == \
        cfg.model_dump(include={"instance_count", "max_queue_delay_microseconds"})
    assert a.best.throughput == pytest.approx(t, rel=0.03) and a.best.point.concurrency == c
    # 1024 grid points; the climb measures a few per step, and the 2 finalists and the baseline twice each.
    screened = [r for r in results if r.point.phase == "screen"]
    assert len(screened) <= 30 and len(results) == len(screened) + 6, [r.point for r in results]
    assert len({(r.point.config_id, r.point.concurrency) for r in results}) + len(strategy.skipped) == 1024
    assert sum("off the climb's path" in why for _, why in strategy.skipped) > 900
    # It starts from the baseline, searching its concurrency from the top (128, then the budget's guess).
    assert screened[0].point.baseline and screened[0].point.concurrency == 128


def test_a_climb_steps_over_max_batch_sizes_that_form_the_same_batches():
    from mnist_etc.benchmark.strategies.neighbours import Lattice

    plan = plan_configs(large_space(), None, ())
    lattice = Lattice(plan)
    assert lattice.axes == ("max_batch_size", "max_queue_delay_microseconds", "instance_count")
    cid = {(cfg.instance_count, cfg.max_batch_size, cfg.max_queue_delay_microseconds): i for i, cfg, _, _ in plan}
    names = {i: (cfg.instance_count, cfg.max_batch_size, cfg.max_queue_delay_microseconds) for i, cfg, _, _ in plan}
    # At concurrency 32 with 1 image per request no batch exceeds 32: 64 steps down to 16, and not up.
    assert [(names[n], c) for n, c in lattice.neighbours(cid[(2, 64, 100)], 32, 1)] == [
        ((2, 16, 100), 32), ((2, 64, 0), 32), ((2, 64, 500), 32), ((1, 64, 100), 32), ((3, 64, 100), 32)]
    # ... unless the climb may go up to concurrency 128: 128 is measured there, the only place it differs.
    assert [(names[n], c) for n, c in lattice.neighbours(cid[(2, 64, 100)], 32, 1, 128)][:2] == [
        ((2, 16, 100), 32), ((2, 128, 100), 128)]
    # With 5 images per request 160 may queue: 64 steps to 32 and to 128.
    assert [(names[n], c) for n, c in lattice.neighbours(cid[(1, 64, 0)], 32, 5)] == [
        ((1, 32, 0), 32), ((1, 128, 0), 32), ((1, 64, 100), 32), ((2, 64, 0), 32)]


def test_confirm_rounds_use_few_windows_and_a_tie_is_said_not_measured_on():
    from mnist_etc.benchmark.report import verdict_sentence

    configs = space(counts=(2,), sizes=(64, 128))   # twins at concurrency 32, but for the 4% below

    def twins(point):
        t, p99 = figures_of(point)
        return (t * (1.04 if point.config.max_batch_size == 128 else 1.0)
                * ((0.9, 1.1)[point.repeat % 2] if point.phase == "confirm" else 1.0)), p99

    strategy = make_strategy(AdaptiveSettings(name="adaptive", options=AdaptiveOptions(screen="descend", refine=False)),
                             plan_configs(configs, None, ()), None, "throughput", MeasurementSettings(max_trials=10))
    results = serve(strategy, figures=twins)
    confirm = [r.point for r in results if r.point.phase == "confirm"]
    assert len(confirm) == 4 and all(p.measurement.max_trials == 3 for p in confirm)
    a = analyse(results, "throughput", None, None)
    assert a.top_two_apart(None) is False and a.runner_up() is not None
    assert "cannot be told apart from" in verdict_sentence(a, {0: "A", 1: "B"}, bold=False)


def test_a_spent_time_budget_stops_the_climb_and_confirms_once():
    configs = large_space()
    strategy = adaptive(plan_configs(configs, None, ()), 20.0, time_budget_s=1e-9)
    results = serve(strategy, figures=two_core_figures)
    assert strategy.out_of_time
    phases = [r.point.phase for r in results]
    assert phases.count("confirm") == 1 and phases.count("screen") >= 1   # the centre's own search, then one round
    assert any("time budget of 1e-09 s was spent" in why for _, why in strategy.skipped)


def test_a_baseline_off_the_grid_hands_the_climb_to_the_nearest_grid_configuration():
    configs = space(counts=(1, 2), sizes=(1, 2, 4))
    base = TritonModelConfig(instance_count=1, max_batch_size=64, preferred_batch_size=(64,),
                             max_queue_delay_microseconds=0)
    strategy = adaptive(plan_configs(configs, base, CONC), None)
    results = serve(strategy)
    screened = [(r.point.config.instance_count, r.point.config.max_batch_size) for r in results
                if r.point.phase == "screen"]
    assert screened[0] == (1, 64) and (1, 4) in screened and (2, 4) in screened
    a = analyse(results, "throughput", None, None)
    t, cfg, c = true_best(configs, None)     # the grid's best is a finalist, re-measured beside the baseline
    assert (cfg, c) in [(f.point.config, f.point.concurrency) for f in a.ranking]
    assert a.baseline_best.repeated and len(a.ranking) == 2      # the baseline is a finalist here


def test_a_baseline_triton_refuses_hands_the_climb_to_the_grid():
    configs = space(counts=(1, 2), sizes=(4, 16))
    base = TritonModelConfig(instance_count=1, max_batch_size=2, max_queue_delay_microseconds=0)
    strategy = adaptive(plan_configs(configs, base, CONC), None)
    results = serve(strategy, refuse=(2,))
    assert results[0].failure == "load_refused" and results[0].point.baseline
    assert {r.point.config.max_batch_size for r in results[1:]} >= {4, 16}
    a = analyse(results, "throughput", None, None)
    assert a.best is not None and a.best.repeated
