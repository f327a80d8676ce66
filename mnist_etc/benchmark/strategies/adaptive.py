"""The adaptive search (the default): spend measuring time where the answer is.

Two phases (three with `screen: descend`), each behind get_configs()/set_last_results():

1. **screen**, one cheap measurement per point (3 short windows):
   - `climb` (the default): a hill climb over the configurations, as Model Analyzer's quick search does. It
     starts at the baseline (else the configuration in the middle of the grid; a baseline with no neighbour on
     the grid hands over to the grid's configuration nearest to it), finds its highest concurrency
     within the p99 budget (as `descend` does), then measures every neighbour (one setting one step away; max
     batch sizes that form the same batches at that concurrency count as one, see neighbours.py) at that
     concurrency, one step higher while it fits and serves more, lower while it does not fit. It moves to
     the best neighbour if it serves more than `min_gain` above where it stands, and stops when none does.
     The measurements grow with the number of settings varied, not with the size of the grid.
   - `descend`: every configuration from its highest concurrency down to the highest that fits the budget;
     if the p99 there exceeds it, a search over its concurrencies (guided by how far over the budget it was)
     finds the highest one that fits. Under a closed-loop load, throughput grows with concurrency until the
     server saturates and p99 grows with it, so the highest concurrency within the budget is where a
     configuration serves the most.
   - `all`: every grid point (skipping only concurrencies above one already over budget).
2. **refine** (`descend` only): the `finalists` best configurations are measured one concurrency lower, going
   on down while throughput still rises, in case the server loses throughput under too many requests.
3. **confirm**: each finalist's best point, and the baseline's, is measured `repeats` times more with the
   grid's window (at most `confirm_windows` windows each: the ranking rests on the median over the rounds,
   not on one measurement settling), interleaved (A B C, C B A, ...) so that a slow minute of a shared
   machine hits every finalist alike. The ranking rests on the medians of these, shown with their spread;
   when the top two overlap, the analysis says they cannot be told apart rather than measuring on.

`time_budget_s` bounds the wall time: once spent, no new configuration is screened and the confirm phase
makes one round. A point whose windows never settle is recorded with its median and spread (see perf.py),
never discarded. When no point fits the budget, the finalists are the points with the lowest p99, so the
best effort shown rests on repeated measurements too.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterator, Literal, Sequence

from pydantic import Field

from mnist_etc.benchmark.perf import MIN_TRIALS, MeasurementSettings
from mnist_etc.benchmark.strategies.base import Plan, Point, objective_of
from mnist_etc.benchmark.strategies.neighbours import Lattice
from mnist_etc.config import Settings

# A failure that says nothing about load, only that this configuration cannot be measured at all.
CONFIG_FAILURES = ("load_refused", "config_mismatch", "server_down")


class AdaptiveOptions(Settings):
    """Options of the adaptive search."""

    screen: Literal["climb", "descend", "all"] = Field("climb", description=(
        "climb: a hill climb from the baseline over configurations one setting apart; descend: each "
        "configuration from its highest concurrency down to the highest that fits the p99 budget; all: every "
        "grid point once"))
    screen_interval_ms: int = Field(1000, ge=100, description=(
        "window of a screening measurement (3 windows each), in ms; at most the grid's measurement.interval_ms"))
    min_gain: float = Field(0.02, ge=0, description=(
        "climb: move to a neighbour, or to a higher concurrency, only for more than this relative gain"))
    finalists: int = Field(2, ge=1, description="configurations re-measured at the end (besides the baseline)")
    repeats: int = Field(2, ge=0, description=(
        "re-measurements of each finalist with the grid's window; 0 = rank on the screen alone"))
    confirm_windows: int = Field(3, ge=MIN_TRIALS, description=(
        "windows of one re-measurement at most (at most the grid's measurement.max_trials)"))
    refine: bool = Field(True, description=(
        "measure each finalist at lower concurrencies while its throughput still rises (screen: descend)"))
    time_budget_s: float | None = Field(None, gt=0, description=(
        "wall time of the search; once spent, nothing new is screened and the finalists are re-measured once"))


class AdaptiveSettings(Settings):
    """Screen every configuration cheaply, drop the dominated, re-measure the finalists."""

    name: Literal["adaptive"]
    options: AdaptiveOptions = Field(default_factory=AdaptiveOptions, description=(
        "screen, screen_interval_ms, min_gain, finalists, repeats, confirm_windows, refine, time_budget_s"))


class AdaptiveSearch:
    name = "adaptive"

    def __init__(self, plan: Plan, budget_ms: float | None = None, objective: str = "throughput",
                 measurement: MeasurementSettings | None = None, options: AdaptiveOptions | None = None,
                 request_batch_size: int = 1):
        self.plan = list(plan)
        self.budget_ms, self.objective = budget_ms, objective
        self.options = options or AdaptiveOptions()
        self.request_batch_size = request_batch_size
        measurement = measurement or MeasurementSettings()
        self.screen_settings = measurement.replace(
            interval_ms=min(self.options.screen_interval_ms, measurement.interval_ms), max_trials=MIN_TRIALS)
        confirm_trials = min(self.options.confirm_windows, measurement.max_trials)
        self.confirm_settings = (None if confirm_trials == measurement.max_trials
                                 else measurement.replace(max_trials=confirm_trials))
        self.lattice = Lattice(self.plan)
        self._started: float | None = None
        self.out_of_time = False          # the time budget was spent before the search was through
        self.results: dict[tuple[int, int], list[Any]] = {}     # (config_id, concurrency) -> its results
        self.broken: dict[int, Any] = {}                          # config_id -> the result that ruled it out
        self.targets: list[tuple[int, int]] = []                  # the confirmed points
        self._last: Any = None
        self._count = 0
        self._skipped: list[tuple[Point, str]] = []
        self._phase = "screen"

    # -- the interface -----------------------------------------------------------------------------------
    @property
    def skipped(self) -> list[tuple[Point, str]]:
        return self._skipped

    @property
    def planned(self) -> int:
        """Measurements made plus an estimate of those to come (it sharpens as the search goes)."""
        per_config = {"all": lambda n: n, "descend": lambda n: 1 + (math.ceil(math.log2(n)) if
                                                                  self.budget_ms is not None and n > 1 else 0)}
        screened = {cid for cid, _ in self.results} | set(self.broken)
        if self.options.screen == "climb":   # the next step's neighbours, one measurement each: an estimate
            todo = 2 * len(self.lattice.axes) if self._phase == "screen" else 0
        else:
            todo = sum(per_config[self.options.screen](len(conc)) for cid, _, conc, _ in self.plan
                       if cid not in screened)
        finalists = min(self.options.finalists, len(self.plan))
        refine = finalists if self._phase == "screen" and self._refines else 0
        confirm = self.options.repeats * (len(self.targets) or finalists + 1) if self._phase != "done" else 0
        done_confirm = sum(1 for rs in self.results.values() for r in rs if r.point.phase == "confirm")
        return self._count + todo + refine + max(0, confirm - done_confirm)

    def set_last_results(self, results: Sequence[Any]) -> None:
        for r in results:
            self._last = r
            self._count += 1
            self.results.setdefault((r.point.config_id, r.point.concurrency), []).append(r)

    def get_configs(self) -> Iterator[Point]:
        self._started = time.monotonic()
        if self.options.screen == "climb":
            yield from self._climb()
        for entry in self.plan if self.options.screen != "climb" else ():
            if self._spent():
                break
            if self.options.screen == "all":
                yield from self._screen_all(*entry)
            else:
                yield from self._descend(*entry)
        if self._refines:
            self._phase = "refine"
            for cid in self._finalists():
                if not self._spent():
                    yield from self._refine(cid)
        self._phase = "confirm"
        self.targets = self._confirm_targets()
        for repeat in range(self.options.repeats):
            if repeat > 0 and self._spent():
                break
            # A B C, C B A, A B C: every round sees every finalist, and one reload per round is saved.
            for cid, c in (self.targets if repeat % 2 == 0 else self.targets[::-1]):
                yield Point(cid, self._config(cid), c, self._is_base(cid), "confirm", repeat,
                            measurement=self.confirm_settings)
        self._phase = "done"
        self._record_skipped()

    # -- phases ------------------------------------------------------------------------------------------
    @property
    def _refines(self) -> bool:
        return self.options.refine and self.options.screen == "descend"

    def _spent(self) -> bool:
        budget = self.options.time_budget_s
        if budget is not None and self._started is not None and time.monotonic() - self._started > budget:
            self.out_of_time = True
        return self.out_of_time

    def _measure(self, point: Point) -> Iterator[Point]:
        yield point
        return self._last

    def _screen_point(self, cid: int, c: int, phase: str = "screen") -> Point:
        return Point(cid, self._config(cid), c, self._is_base(cid), phase, measurement=self.screen_settings)

    def _climb(self) -> Iterator[Point]:
        """Steepest ascent over the lattice of configurations, from the baseline (else the grid's centre)."""
        here = next((cid for cid, _, _, base in self.plan if base), None)
        here = self.lattice.centre() if here is None else here
        yield from self._descend(*self._entry(here))
        visited = {here}
        anchor = self._anchor(here)
        higher = [c for c in self._concurrencies(here) if c > anchor]
        if here in self.broken or not self.lattice.neighbours(here, anchor, self.request_batch_size,
                                                              higher[0] if higher else None):
            # A baseline off the grid (another preferred batch size, say), or one that cannot be loaded: the
            # climb starts at the grid's configuration nearest to it.
            start = self.lattice.nearest(here)
            if start is None or self._spent():
                return
            visited.add(start)
            yield from self._warm(start, anchor)
            here = start
        while here not in self.broken and not self._spent():
            anchor = self._anchor(here)
            higher = [c for c in self._concurrencies(here) if c > anchor]
            around = [(cid, at) for cid, at in self.lattice.neighbours(here, anchor, self.request_batch_size,
                                                                       higher[0] if higher else None)
                      if cid not in visited]
            for cid, at in around:
                if self._spent():
                    break
                visited.add(cid)
                yield from self._warm(cid, at)
            step = max((cid for cid, _ in around), key=self._score, default=None)
            if step is None or not self._better(step, here):
                return
            here = step

    def _warm(self, cid: int, anchor: int) -> Iterator[Point]:
        """A neighbour's highest concurrency within the budget, starting where its neighbour stood: one step up
        while it fits, is expected to fit (p99 in proportion to concurrency) and serves more; down (guided by
        how far over the budget it was) while it does not fit."""
        conc = self._concurrencies(cid)
        i = max([j for j, c in enumerate(conc) if c <= anchor], default=0)
        r = yield from self._measure(self._screen_point(cid, conc[i]))
        if not r.ok and r.failure in CONFIG_FAILURES:
            self.broken[cid] = r
            return
        if self._fits(r):
            while i + 1 < len(conc) and (self.budget_ms is None
                                         or r.p99_ms * conc[i + 1] / conc[i] <= self.budget_ms):
                up = yield from self._measure(self._screen_point(cid, conc[i + 1]))
                if not (self._fits(up) and objective_of(up, self.objective)
                        > objective_of(r, self.objective) * (1 + self.options.min_gain)):
                    return
                r, i = up, i + 1
            return
        while i > 0 and not self._fits(r):
            guess = conc[i] * self.budget_ms / r.p99_ms if r.ok and self.budget_ms else 0
            i = max([j for j in range(i) if conc[j] <= guess], default=0 if r.ok else i - 1)
            r = yield from self._measure(self._screen_point(cid, conc[i]))
            if not r.ok and r.failure in CONFIG_FAILURES:
                self.broken[cid] = r
                return

    def _anchor(self, cid: int) -> int:
        """The concurrency a climb measures the neighbours of `cid` at: where it served the most in budget."""
        r = self._best_fitting(cid) or self._lowest_p99(cid)
        return r.point.concurrency if r is not None else self._concurrencies(cid)[-1]

    def _score(self, cid: int) -> tuple[int, float]:
        if (r := self._best_fitting(cid)) is not None:
            return 1, objective_of(r, self.objective)
        if (r := self._lowest_p99(cid)) is not None:
            return 0, -r.p99_ms
        return -1, 0.0

    def _better(self, cid: int, than: int) -> bool:
        (fits, value), (fits_than, value_than) = self._score(cid), self._score(than)
        if fits != fits_than:
            return fits > fits_than
        if fits == 1:
            return value > value_than * (1 + self.options.min_gain)
        return value > value_than

    def _descend(self, cid: int, cfg: Any, conc: tuple[int, ...], base: bool) -> Iterator[Point]:
        """The highest concurrency that fits the budget, searched from the top: after a point over the budget
        the next guess scales concurrency by budget / p99 (at saturation p99 grows in proportion to the
        requests in flight), after a fitting one it bisects what is left above."""
        lo, hi = 0, len(conc) - 1
        probe = hi
        while lo <= hi:
            r = yield from self._measure(self._screen_point(cid, conc[probe]))
            if not r.ok and r.failure in CONFIG_FAILURES:
                self.broken[cid] = r
                return
            if self._fits(r):
                lo = probe + 1
                probe = (lo + hi + 1) // 2
            else:
                hi = probe - 1
                guess = conc[probe] * self.budget_ms / r.p99_ms if r.ok and self.budget_ms else 0
                below = [i for i in range(lo, hi + 1) if conc[i] <= guess]
                probe = below[-1] if below else lo

    def _screen_all(self, cid: int, cfg: Any, conc: tuple[int, ...], base: bool) -> Iterator[Point]:
        for c in conc:
            r = yield from self._measure(self._screen_point(cid, c))
            if not r.ok and r.failure in CONFIG_FAILURES:
                self.broken[cid] = r
                return
            if r.ok and not self._fits(r):
                return    # p99 grows with concurrency: the higher ones cannot fit either

    def _refine(self, cid: int) -> Iterator[Point]:
        conc = self._concurrencies(cid)
        best = self._best_fitting(cid)
        if best is None:
            return     # a best-effort finalist: its lowest concurrency is measured already
        i = conc.index(best.point.concurrency)
        while i > 0 and (cid, conc[i - 1]) not in self.results:
            r = yield from self._measure(self._screen_point(cid, conc[i - 1], "refine"))
            if not (self._fits(r) and objective_of(r, self.objective) > objective_of(best, self.objective)):
                return
            best, i = r, i - 1

    # -- judging -----------------------------------------------------------------------------------------
    def _fits(self, r: Any) -> bool:
        return r.ok and (self.budget_ms is None or r.p99_ms <= self.budget_ms)

    def _screened(self, cid: int) -> list[Any]:
        return [r for (c_id, _), rs in self.results.items() if c_id == cid for r in rs
                if r.ok and r.point.phase in ("screen", "refine")]

    def _best_fitting(self, cid: int) -> Any:
        fitting = [r for r in self._screened(cid) if self._fits(r)]
        return max(fitting, key=lambda r: objective_of(r, self.objective)) if fitting else None

    def _lowest_p99(self, cid: int) -> Any:
        measured = self._screened(cid)
        return min(measured, key=lambda r: r.p99_ms) if measured else None

    def _finalists(self) -> list[int]:
        """The configurations that can still win: the best `finalists` by their best fitting point; if nothing
        fits the budget, those with the lowest p99 (the best effort)."""
        fitting = [(cid, r) for cid, *_ in self.plan if (r := self._best_fitting(cid)) is not None]
        if fitting:
            fitting.sort(key=lambda item: -objective_of(item[1], self.objective))
        else:
            fitting = [(cid, r) for cid, *_ in self.plan if (r := self._lowest_p99(cid)) is not None]
            fitting.sort(key=lambda item: item[1].p99_ms)
        return [cid for cid, _ in fitting[:self.options.finalists]]

    def _confirm_targets(self) -> list[tuple[int, int]]:
        targets = []
        for cid in self._finalists():
            r = self._best_fitting(cid) or self._lowest_p99(cid)
            targets.append((cid, r.point.concurrency))
        base = next((cid for cid, _, _, is_base in self.plan if is_base), None)
        if base is not None and base not in {cid for cid, _ in targets}:
            r = self._best_fitting(base)
            if r is not None:   # the improvement figure compares re-measured with re-measured
                targets.append((base, r.point.concurrency))
        return targets

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _entry(self, cid: int) -> tuple[int, Any, tuple[int, ...], bool]:
        return next(e for e in self.plan if e[0] == cid)

    def _config(self, cid: int) -> Any:
        return self._entry(cid)[1]

    def _concurrencies(self, cid: int) -> tuple[int, ...]:
        return self._entry(cid)[2]

    def _is_base(self, cid: int) -> bool:
        return self._entry(cid)[3]

    def _record_skipped(self) -> None:
        for cid, cfg, conc, base in self.plan:
            for c in conc:
                if (cid, c) not in self.results:
                    self._skipped.append((Point(cid, cfg, c, base, "screen"), self._why_not(cid, c)))

    def _why_not(self, cid: int, c: int) -> str:
        if not any(c_id == cid for c_id, _ in self.results) and cid not in self.broken:
            if self.out_of_time:
                return f"not measured: the search's time budget of {self.options.time_budget_s:g} s was spent"
            if self.options.screen == "climb":
                return "not measured: off the climb's path (no neighbour on the way there served more)"
        if cid in self.broken:
            r = self.broken[cid]
            return f"not measured: the configuration failed at concurrency {r.point.concurrency} ({r.failure})"
        measured = {cc: rs[0] for (c_id, cc), rs in self.results.items() if c_id == cid}
        over = sorted(cc for cc, r in measured.items() if cc < c and not self._fits(r))
        if over:
            r = measured[over[-1]]
            if r.ok:
                return (f"not measured: p99 {r.p99_ms:.2f} ms at concurrency {over[-1]} already exceeds the "
                        f"{self.budget_ms:g} ms budget")
            return f"not measured: concurrency {over[-1]} already failed ({r.failure})"
        fits = sorted(cc for cc, r in measured.items() if cc > c and self._fits(r))
        if fits:
            r = measured[fits[-1]]
            within = " within the budget" if self.budget_ms is not None else ""
            return (f"not measured: concurrency {fits[-1]} serves {r.throughput:,.0f} images/s{within}; a lower "
                    f"concurrency is not expected to serve more")
        return "not measured: dominated in the screen"
