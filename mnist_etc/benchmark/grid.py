"""What a benchmark measures, read from `search_spaces/benchmark_*.yaml`, validated before any load is sent.

    >>> spec = load_grid("search_spaces/benchmark_smoke.yaml")
    >>> spec = spec.with_overrides(instance_count=(1, 2), concurrency="4:8:4")   # command line over YAML
    >>> [(cfg.instance_count, conc) for cfg, conc in spec.configs()]

One home for defaults (the dataclasses below) and one precedence rule: command line over YAML over default.
The YAML schema (every key optional):

    name: seed                       # prefix of the run directory artifacts/benchmarks/<name>-<time>
    model: mnist_etc                 # served model; version: null = the newest
    repository: triton/model_repository
    grid:                            # one mapping, or a list of them (their union, duplicates merged)
      - instance_count: [1, 2, 4]    # axes: TritonModelConfig fields, each a list or "start:end[:step]"
        max_queue_delay_microseconds: [500]
        preferred_batch_size: [[8, 16, 32, 64]]   # a list of choices, each a list ([] = Triton's default)
        concurrency: [20]            # optional: this sub-grid's own concurrency list
    fixed: {max_batch_size: 64}      # TritonModelConfig fields held constant
    concurrency: "3:6,20"            # default concurrency list of the sub-grids
    request_batch_size: 5            # images per request (perf_analyzer -b)
    protocol: grpc                   # or http
    measurement: {interval_ms: 5000, stability_percentage: 10, max_trials: 10, percentile: null, timeout_s: null}
    p99_budget_ms: 20                # null = no budget
    objective: throughput            # or throughput_per_instance, efficiency
    baseline: current                # the "default" to beat: current (config loaded at start), defaults, or a mapping
    strategy: brute                  # or prune_over_budget
    ceiling_seconds: 3               # in-process ONNX Runtime measurement time
    startup_timeout_s: 120

Every mistake gets one sentence naming the key, the bad value and what is accepted (`UserError`).
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnist_etc.benchmark.axes import GRID_AXES, SubGrid, axis_values, is_int, is_number, parse_int_list
from mnist_etc.benchmark.reconfigure import effective
from mnist_etc.errors import UserError
from mnist_etc.names import validate_name
from mnist_etc.triton.model_config import TritonModelConfig
from mnist_etc.triton.repository import (DEFAULT_MODEL_NAME, DEFAULT_REPOSITORY, validate_model_name,
                                         validate_version)

PROTOCOLS = ("grpc", "http")
OBJECTIVES = ("throughput", "throughput_per_instance", "efficiency")
BASELINES = ("current", "defaults")
TOP_LEVEL_KEYS = ("name", "description", "model", "version", "repository", "grid", "fixed", "concurrency",
                  "request_batch_size", "protocol", "measurement", "p99_budget_ms", "objective", "baseline",
                  "strategy", "ceiling_seconds", "startup_timeout_s")
# perf_analyzer judges stability over its last 3 windows: fewer trials can never be stable.
MIN_TRIALS = 3


def validate_run_name(name: Any, what: str = "run") -> str:
    """Run names become directory names, MLflow run names and Triton config names."""
    return validate_name(name, what)


@dataclass(frozen=True)
class MeasurementSettings:
    """perf_analyzer's measurement window and stability rule (its own defaults, except where noted)."""

    interval_ms: int = 5000             # --measurement-interval: one window
    stability_percentage: float = 10.0  # --stability-percentage: max/min of the last 3 windows within this
    max_trials: int = 10                # --max-trials: windows before giving up as unstable
    percentile: int | None = None       # --percentile: judge stability on this latency percentile, not the mean
    timeout_s: float | None = None      # kill perf_analyzer after this; None = derived from the windows

    def __post_init__(self) -> None:
        if not is_int(self.interval_ms) or self.interval_ms < 100:
            raise UserError(f"measurement.interval_ms must be an integer >= 100 (milliseconds per window), got "
                            f"{self.interval_ms!r}.")
        if not is_number(self.stability_percentage) or self.stability_percentage <= 0:
            raise UserError(f"measurement.stability_percentage must be a number > 0, got "
                            f"{self.stability_percentage!r}.")
        if not is_int(self.max_trials) or self.max_trials < MIN_TRIALS:
            raise UserError(f"measurement.max_trials must be an integer >= {MIN_TRIALS} (perf_analyzer judges "
                            f"stability over 3 windows), got {self.max_trials!r}.")
        if self.percentile is not None and (not is_int(self.percentile) or not 1 <= self.percentile <= 99):
            raise UserError(f"measurement.percentile must be an integer in 1..99 or null, got {self.percentile!r}.")
        if self.timeout_s is not None and (not is_number(self.timeout_s) or self.timeout_s <= 0):
            raise UserError(f"measurement.timeout_s must be a number > 0 or null, got {self.timeout_s!r}.")

    @property
    def effective_timeout_s(self) -> float:
        # Each trial is one window plus perf_analyzer's own bookkeeping; a generous margin, since a hung
        # perf_analyzer is killed and recorded, not waited for forever.
        return self.timeout_s or 60.0 + 2.0 * self.interval_ms / 1000 * (self.max_trials + 2)


def _hashable(values: dict[str, Any]) -> tuple:
    return tuple(sorted(values.items()))


def _differences(a: TritonModelConfig, b: TritonModelConfig) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k} {da[k]} vs {db[k]}" for k in da if da[k] != db[k])


def _int_field(name: str, value: Any, low: int) -> None:
    if not is_int(value) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}.")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A validated benchmark: which model, which configurations at which concurrencies, how to judge."""

    name: str = "benchmark"
    description: str = ""
    model: str = DEFAULT_MODEL_NAME
    version: int | None = None
    repository: Path = DEFAULT_REPOSITORY
    grid: tuple[SubGrid, ...] = (SubGrid(),)
    fixed: tuple[tuple[str, Any], ...] = ()
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    request_batch_size: int = 1
    protocol: str = "grpc"
    measurement: MeasurementSettings = field(default_factory=MeasurementSettings)
    p99_budget_ms: float | None = None
    objective: str = "throughput"
    baseline: str | TritonModelConfig = "current"
    strategy: str = "brute"
    ceiling_seconds: float = 3.0
    startup_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        validate_run_name(self.name, "benchmark")
        if not isinstance(self.description, str):
            raise UserError(f"description must be text, got {self.description!r}.")
        validate_model_name(self.model)
        if self.version is not None:
            object.__setattr__(self, "version", validate_version(self.version))
        object.__setattr__(self, "repository", Path(self.repository))
        object.__setattr__(self, "concurrency", parse_int_list(self.concurrency, "concurrency", 1))
        _int_field("request_batch_size", self.request_batch_size, 1)
        if self.protocol not in PROTOCOLS:
            raise UserError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}.")
        if self.p99_budget_ms is not None and (not is_number(self.p99_budget_ms) or self.p99_budget_ms <= 0):
            raise UserError(f"p99_budget_ms must be a number > 0 (milliseconds) or null for no budget, got "
                            f"{self.p99_budget_ms!r}.")
        if self.objective not in OBJECTIVES:
            raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}.")
        from mnist_etc.benchmark.strategy import STRATEGIES  # the registry lives with the strategies

        if self.strategy not in STRATEGIES:
            raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}.")
        if self.strategy == "prune_over_budget" and self.p99_budget_ms is None:
            raise UserError("strategy prune_over_budget needs a p99_budget_ms to prune against; set one or use "
                            "strategy brute.")
        if isinstance(self.baseline, str) and self.baseline not in BASELINES:
            raise UserError(f"baseline must be one of {', '.join(BASELINES)} or a mapping of config.pbtxt "
                            f"settings, got {self.baseline!r}.")
        for name in ("ceiling_seconds", "startup_timeout_s"):
            if not is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise UserError(f"{name} must be a number > 0, got {getattr(self, name)!r}.")
        if not self.grid:
            raise UserError("grid must hold at least one sub-grid (a mapping of axis -> values).")
        fixed = dict(self.fixed)
        for i, sub in enumerate(self.grid):
            both = sorted({k for k, _ in sub.axes} & set(fixed))
            if both:
                raise UserError(f"{self._where(i)} sweeps {', '.join(both)}, which 'fixed' also sets; keep each "
                                f"setting in one place.")
        self.configs()   # expands and validates every configuration now, before any work starts

    def _where(self, i: int) -> str:
        return "grid" if len(self.grid) == 1 else f"grid[{i}]"

    def base_config(self) -> TritonModelConfig:
        return TritonModelConfig.from_mapping(dict(self.fixed))

    def configs(self) -> list[tuple[TritonModelConfig, tuple[int, ...]]]:
        """Every configuration with its concurrencies (ascending), in grid order, duplicates merged."""
        fixed = dict(self.fixed)
        merged: dict[TritonModelConfig, set[int]] = {}
        served_as: dict[tuple, TritonModelConfig] = {}   # what Triton would load -> the first config asking for it
        for i, sub in enumerate(self.grid):
            names = [k for k, _ in sub.axes]
            for combo in itertools.product(*[v for _, v in sub.axes]):
                values = {**fixed, **dict(zip(names, combo))}
                try:
                    cfg = TritonModelConfig.from_mapping(values)
                except UserError as exc:
                    shown = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}"
                                      for k, v in zip(names, combo)) or "fixed settings"
                    raise UserError(f"{self._where(i)} configuration ({shown}): {str(exc).rstrip('.')}.") from None
                if self.request_batch_size > cfg.max_batch_size:
                    raise UserError(f"request_batch_size {self.request_batch_size} exceeds max_batch_size "
                                    f"{cfg.max_batch_size} of a {self._where(i)} configuration, so Triton would "
                                    f"refuse every request; lower request_batch_size or raise max_batch_size.")
                key = _hashable(effective(cfg))
                twin = served_as.setdefault(key, cfg)
                if twin != cfg:
                    raise UserError(f"{self._where(i)} holds two configurations that Triton serves identically "
                                    f"({_differences(twin, cfg)}): it completes an empty preferred_batch_size with "
                                    f"max_batch_size and ignores the queue settings without dynamic batching; drop "
                                    f"one of them.")
                merged.setdefault(cfg, set()).update(sub.concurrency or self.concurrency)
        return [(cfg, tuple(sorted(conc))) for cfg, conc in merged.items()]

    def all_concurrencies(self) -> tuple[int, ...]:
        return tuple(sorted({c for _, conc in self.configs() for c in conc}))

    def baseline_config(self, current: TritonModelConfig | None) -> TritonModelConfig | None:
        """The configuration to beat; `current` is what the server had loaded when the run started."""
        if isinstance(self.baseline, TritonModelConfig):
            return self.baseline
        if self.baseline == "defaults":
            return TritonModelConfig()
        return current

    def n_points(self) -> int:
        return sum(len(conc) for _, conc in self.configs())

    # -- precedence: command line over YAML over default ------------------------------------------------
    def with_overrides(self, **overrides: Any) -> "BenchmarkSpec":
        """Options given on the command line (None = not given) replace the YAML's.

        An axis given here (e.g. instance_count=(1, 2)) replaces that axis in every sub-grid and wins over a
        `fixed` value of the same name; `concurrency` replaces every sub-grid's own concurrency list."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - set(GRID_AXES) - {f.name for f in dataclasses.fields(self)}
                         - set(f.name for f in dataclasses.fields(MeasurementSettings)))
        if unknown:
            raise UserError(f"unknown benchmark override(s) {', '.join(unknown)}.")
        changes: dict[str, Any] = {}
        grid, fixed = self.grid, dict(self.fixed)
        for axis in GRID_AXES:
            if axis in given:
                values = axis_values(axis, given.pop(axis), "command line")
                grid = tuple(sub.with_axis(axis, values) for sub in grid)
                fixed.pop(axis, None)
        if "concurrency" in given:
            changes["concurrency"] = parse_int_list(given.pop("concurrency"), "concurrency", 1)
            grid = tuple(dataclasses.replace(sub, concurrency=None) for sub in grid)
        measurement = {k: given.pop(k) for k in list(given) if k in {f.name for f in
                                                                     dataclasses.fields(MeasurementSettings)}}
        if measurement:
            changes["measurement"] = dataclasses.replace(self.measurement, **measurement)
        if "baseline" in given and isinstance(given["baseline"], dict):
            given["baseline"] = TritonModelConfig.from_mapping(given["baseline"])
        changes.update(given)
        return dataclasses.replace(self, grid=grid, fixed=tuple(fixed.items()), **changes)

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec, as a run records it next to its results."""
        return {
            "name": self.name, "description": self.description, "model": self.model, "version": self.version,
            "repository": str(self.repository), "grid": [s.to_dict() for s in self.grid],
            "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in self.fixed},
            "concurrency": list(self.concurrency), "request_batch_size": self.request_batch_size,
            "protocol": self.protocol, "measurement": dataclasses.asdict(self.measurement),
            "p99_budget_ms": self.p99_budget_ms, "objective": self.objective,
            "baseline": self.baseline.to_dict() if isinstance(self.baseline, TritonModelConfig) else self.baseline,
            "strategy": self.strategy, "ceiling_seconds": self.ceiling_seconds,
            "startup_timeout_s": self.startup_timeout_s,
        }


def spec_from_mapping(data: Any, where: str = "benchmark grid") -> BenchmarkSpec:
    """Build a spec from parsed YAML/JSON; `where` prefixes every error sentence (usually the file name)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a YAML mapping of settings, got {type(data).__name__}.")
    try:
        unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
        if unknown:
            raise UserError(f"unknown setting(s) {', '.join(unknown)}; accepted: {', '.join(TOP_LEVEL_KEYS)}.")
        kw = dict(data)
        if "grid" in kw:
            raw = kw["grid"]
            subs = raw if isinstance(raw, list) else [raw]
            if not subs:
                raise UserError("grid must hold at least one sub-grid (a mapping of axis -> values).")
            kw["grid"] = tuple(SubGrid.from_mapping(s, "grid" if len(subs) == 1 else f"grid[{i}]")
                               for i, s in enumerate(subs))
        if "fixed" in kw:
            fixed = kw["fixed"] or {}
            if not isinstance(fixed, dict):
                raise UserError(f"fixed must be a mapping of config.pbtxt settings, got {fixed!r}.")
            TritonModelConfig.from_mapping(fixed)  # unknown keys and bad values rejected here
            kw["fixed"] = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in fixed.items())
        if "measurement" in kw:
            m = kw["measurement"] or {}
            if not isinstance(m, dict):
                raise UserError(f"measurement must be a mapping, got {m!r}.")
            known = [f.name for f in dataclasses.fields(MeasurementSettings)]
            bad = sorted(set(m) - set(known))
            if bad:
                raise UserError(f"unknown measurement setting(s) {', '.join(bad)}; accepted: {', '.join(known)}.")
            kw["measurement"] = MeasurementSettings(**m)
        if isinstance(kw.get("baseline"), dict):
            kw["baseline"] = TritonModelConfig.from_mapping(kw["baseline"])
        if "repository" in kw and not isinstance(kw["repository"], str):
            raise UserError(f"repository must be a directory path, got {kw['repository']!r}.")
        return BenchmarkSpec(**kw)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def load_grid(path: str | Path) -> BenchmarkSpec:
    """Read and validate a benchmark YAML; its `name` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"benchmark grid {str(path)!r} does not exist; see search_spaces/benchmark_smoke.yaml for "
                        f"an example.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{at} ({getattr(exc, 'problem', None) or exc}).") from None
    if isinstance(data, dict) and "name" not in data:
        stem = re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)
        data = {**data, "name": stem.removeprefix("benchmark_") or "benchmark"}
    return spec_from_mapping(data, str(path))


def resolve_spec(grid: str | Path | None = None, **overrides: Any) -> BenchmarkSpec:
    """The spec of a run: the grid file (or the defaults) with the given overrides (None = not given).

    The command line and the Prefect flow both build their spec here, so they resolve it the same way."""
    spec = load_grid(grid) if grid else BenchmarkSpec()
    return spec.with_overrides(**overrides)
