"""What a benchmark measures, read from `search_spaces/benchmark_*.yaml`, validated before any load is sent.

    >>> spec = load_grid("search_spaces/benchmark_smoke.yaml")
    >>> spec = spec.with_overrides(instance_count=(1, 2), concurrency="4:8:4")   # command line over YAML
    >>> [(cfg.instance_count, conc) for cfg, conc in spec.configs()]

One home for defaults (the fields below) and one precedence rule: command line over YAML over default.
The grid is expanded and every configuration validated once, when the spec is built. The YAML schema
(every key optional; `BenchmarkSpec.model_json_schema()` has each key's description):

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
    measurement: {interval_ms: 5000, stability_percentage: 10, max_trials: 10, percentile: 99, timeout_s: null}
    p99_budget_ms: 20                # null = no budget
    objective: throughput            # or throughput_per_instance, efficiency
    baseline: current                # the "default" to beat: current (config loaded at start), defaults, or a mapping
    strategy: adaptive               # or brute, prune_over_budget; with options:
                                     # {name: adaptive, options: {finalists: 3, repeats: 3, screen: descend}}
    ceiling_seconds: 3               # in-process ONNX Runtime measurement time
    startup_timeout_s: 120

Every mistake gets one sentence naming the file, the key path, the bad value and what is accepted.
"""
from __future__ import annotations

import itertools
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BeforeValidator, Field, PrivateAttr, ValidationError, create_model,
                      model_validator)

from mnist_etc.benchmark.axes import GRID_AXES, Concurrencies, Partial, SubGrid, one_or_list, optional
from mnist_etc.benchmark.perf import MeasurementSettings, Positive
from mnist_etc.benchmark.strategies import DEFAULT_STRATEGY, STRATEGIES, StrategySettings
from mnist_etc.config import Settings, read_yaml, sentence
from mnist_etc.errors import UserError
from mnist_etc.names import validate_name
from mnist_etc.triton.model_config import TritonModelConfig, as_tuple
from mnist_etc.triton.repository import DEFAULT_MODEL_NAME, DEFAULT_REPOSITORY, validate_model_name

Protocol = Literal["grpc", "http"]
Objective = Literal["throughput", "throughput_per_instance", "efficiency"]
PROTOCOLS, OBJECTIVES = typing.get_args(Protocol), typing.get_args(Objective)
BASELINES = ("current", "defaults")


def validate_run_name(name: Any, what: str = "run") -> str:
    """Run names become directory names, MLflow run names and Triton config names."""
    return validate_name(name, what)


def _baseline(value: Any) -> Any:
    if isinstance(value, dict):
        return TritonModelConfig.parse(value)
    if not isinstance(value, TritonModelConfig) and value not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)} or a mapping of config.pbtxt settings, "
                         f"got {value!r}.")
    return value


FixedSettings = create_model(
    "FixedSettings", __base__=Partial, __doc__="TritonModelConfig fields held constant across the grid.",
    **{name: optional(TritonModelConfig, name) for name in TritonModelConfig.model_fields})


class BenchmarkSpec(Settings):
    """A validated benchmark: which model, which configurations at which concurrencies, how to judge."""

    name: Annotated[str, AfterValidator(lambda v: validate_run_name(v, "benchmark"))] = Field(
        "benchmark", description="prefix of the run directory artifacts/benchmarks/<name>-<time>")
    description: str = Field("", description="what this grid is for")
    model: Annotated[str, AfterValidator(validate_model_name)] = Field(DEFAULT_MODEL_NAME,
                                                                       description="served model name")
    version: Annotated[int, Field(ge=1)] | None = Field(None, description="model version; default: the newest")
    repository: Path = Field(DEFAULT_REPOSITORY, strict=False, description="model repository",
                             json_schema_extra={"accepts": "a directory path"})
    grid: Annotated[tuple[SubGrid, ...], Field(min_length=1), BeforeValidator(as_tuple),  # type: ignore[valid-type]
                    BeforeValidator(lambda v: [v] if isinstance(v, dict) else v)] = Field(
        (SubGrid(),), description="one sub-grid (axis -> values), or a list of them (their union)",
        json_schema_extra=one_or_list("one sub-grid (a mapping of axis -> values) or a non-empty list of them"))
    fixed: FixedSettings = Field(FixedSettings(), description="config.pbtxt settings held constant")  # type: ignore
    concurrency: Concurrencies = Field((1, 2, 4, 8), description=(
        "requests in flight, a list or text like 3:6,20 (default of every sub-grid)"))
    request_batch_size: int = Field(1, ge=1, description="images per request (perf_analyzer -b)")
    protocol: Protocol = Field("grpc", description="how perf_analyzer talks to Triton")
    measurement: MeasurementSettings = Field(MeasurementSettings(), description="perf_analyzer's windows")
    p99_budget_ms: Positive | None = Field(None, description="p99 latency budget in milliseconds; null = none")
    objective: Objective = Field("throughput", description="what the best configuration maximises under the budget")
    baseline: Annotated[Literal["current", "defaults"] | TritonModelConfig, BeforeValidator(_baseline)] = Field(
        "current", description="the configuration to beat: the one loaded at start (current), TritonModelConfig's "
                               "defaults, or a mapping of config.pbtxt settings")
    strategy: StrategySettings = Field(DEFAULT_STRATEGY, validate_default=True, description=(
        f"a strategy name ({', '.join(STRATEGIES)}), or its name and options; adaptive: hill-climb from the baseline "
        f"with cheap measurements, re-measure the finalists; brute: every point once; prune_over_budget: brute without the "
        f"concurrencies above one over budget"))
    ceiling_seconds: Positive = Field(3.0, description="in-process ONNX Runtime measurement time, in seconds")
    startup_timeout_s: Positive = Field(120.0, description="seconds the embedded server may take to start")
    _configs: list[tuple[TritonModelConfig, tuple[int, ...]]] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _one_subgrid_is_called_grid(cls, values: Any, handler: Any) -> "BenchmarkSpec":
        try:
            return handler(values)
        except ValidationError as exc:
            grid = values.get("grid") if isinstance(values, dict) else None
            if isinstance(grid, (list, tuple)) and len(grid) > 1:
                raise
            raise UserError(sentence(exc, cls).replace("grid[0]", "grid", 1)) from None

    def _where(self, i: int) -> str:
        return "grid" if len(self.grid) == 1 else f"grid[{i}]"

    @model_validator(mode="after")
    def _prune_needs_a_budget(self) -> "BenchmarkSpec":
        if self.strategy.name == "prune_over_budget" and self.p99_budget_ms is None:
            raise ValueError("strategy prune_over_budget needs a p99_budget_ms to prune against; set one or use "
                             "strategy brute.")
        return self

    @model_validator(mode="after")
    def _fixed_or_swept(self) -> "BenchmarkSpec":
        for i, sub in enumerate(self.grid):
            both = sorted(set(sub.given()) & set(self.fixed.given()))
            if both:
                raise ValueError(f"{self._where(i)} sweeps {', '.join(both)}, which 'fixed' also sets; keep each "
                                 f"setting in one place.")
        return self

    @model_validator(mode="after")
    def _expand(self) -> "BenchmarkSpec":
        """Every configuration with its concurrencies, in grid order, duplicates merged: checked once, here."""
        from mnist_etc.benchmark.reconfigure import effective   # it imports tritonclient (0.15 s): not for --help

        merged: dict[TritonModelConfig, set[int]] = {}
        served_as: dict[tuple, TritonModelConfig] = {}   # what Triton would load -> the first config asking for it
        for i, sub in enumerate(self.grid):
            axes = {k: v for k, v in sub.given().items() if k != "concurrency"}
            for combo in itertools.product(*axes.values()):
                cfg = self._config(i, dict(zip(axes, combo)))
                self._request_fits(i, cfg)
                twin = served_as.setdefault(tuple(sorted(effective(cfg).items())), cfg)
                if twin != cfg:
                    raise ValueError(f"{self._where(i)} holds two configurations that Triton serves identically "
                                     f"({_differences(twin, cfg)}): it completes an empty preferred_batch_size with "
                                     f"max_batch_size and ignores the queue settings without dynamic batching; drop "
                                     f"one of them.")
                merged.setdefault(cfg, set()).update(sub.concurrency or self.concurrency)
        self._configs = [(cfg, tuple(sorted(conc))) for cfg, conc in merged.items()]
        return self

    def _config(self, i: int, swept: dict[str, Any]) -> TritonModelConfig:
        try:
            return TritonModelConfig(**self.fixed.given(), **swept)
        except UserError as exc:
            shown = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in swept.items())
            raise ValueError(f"{self._where(i)} configuration ({shown or 'fixed settings'}): "
                             f"{str(exc).rstrip('.')}.") from None

    def _request_fits(self, i: int, cfg: TritonModelConfig) -> None:
        if self.request_batch_size > cfg.max_batch_size:
            raise ValueError(f"request_batch_size {self.request_batch_size} exceeds max_batch_size "
                             f"{cfg.max_batch_size} of a {self._where(i)} configuration, so Triton would refuse "
                             f"every request; lower request_batch_size or raise max_batch_size.")

    def configs(self) -> list[tuple[TritonModelConfig, tuple[int, ...]]]:
        """Every configuration with its concurrencies (ascending), as expanded when the spec was built."""
        return list(self._configs)

    def all_concurrencies(self) -> tuple[int, ...]:
        return tuple(sorted({c for _, conc in self._configs for c in conc}))

    def n_points(self) -> int:
        return sum(len(conc) for _, conc in self._configs)

    def baseline_config(self, current: TritonModelConfig | None) -> TritonModelConfig | None:
        """The configuration to beat; `current` is what the server had loaded when the run started."""
        if isinstance(self.baseline, TritonModelConfig):
            return self.baseline
        if self.baseline == "defaults":
            return TritonModelConfig()
        return current

    # -- precedence: command line over YAML over default ------------------------------------------------
    def with_overrides(self, overrides: Any = None, /, **given: Any) -> "BenchmarkSpec":
        """Options given on the command line or to the flow (None = not given) replace the YAML's.

        An axis given here (e.g. instance_count=(1, 2)) replaces that axis in every sub-grid and wins over a
        `fixed` value of the same name; `concurrency` replaces every sub-grid's own concurrency list."""
        if overrides is None:
            overrides = {k: v for k, v in given.items() if v is not None}
        values = BenchmarkOverrides.parse(overrides, source="overrides").given()
        if not values:
            return self   # nothing to replace: the spec stays as built (and expanded) once
        axes = {k: values.pop(k) for k in GRID_AXES if k in values}
        grid = [sub.replace(**axes, **({"concurrency": None} if "concurrency" in values else {}))
                for sub in self.grid]
        measurement = {k: values.pop(k) for k in MeasurementSettings.model_fields if k in values}
        return self.replace(grid=tuple(grid), fixed=self.fixed.replace(**dict.fromkeys(axes)),
                            measurement=self.measurement.replace(**measurement), **values)


def _differences(a: TritonModelConfig, b: TritonModelConfig) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k} {da[k]} vs {db[k]}" for k in da if da[k] != db[k])


# The settings a run may override (command line, flow parameters), grouped as the CLI shows them: one list.
OVERRIDES: tuple[tuple[str, type[Settings], tuple[str, ...]], ...] = (
    ("model", BenchmarkSpec, ("model", "version", "repository")),
    ("grid axes (each replaces that axis in every sub-grid of --grid)", SubGrid, GRID_AXES),
    ("grid axes (each replaces that axis in every sub-grid of --grid)", BenchmarkSpec, ("concurrency",)),
    ("load and measurement", BenchmarkSpec, ("request_batch_size", "protocol")),
    ("load and measurement", MeasurementSettings, tuple(MeasurementSettings.model_fields)),
    ("judging", BenchmarkSpec, ("p99_budget_ms", "objective", "baseline", "strategy")),
    ("run", BenchmarkSpec, ("ceiling_seconds", "startup_timeout_s")),
)
BenchmarkOverrides = create_model(
    "BenchmarkOverrides", __base__=Partial,
    __doc__="Settings that replace the grid file's for one run (unset = the file's value, else the default).",
    **{name: optional(owner, name) for _, owner, names in OVERRIDES for name in names})


def spec_from_mapping(data: Any, where: str = "benchmark grid") -> BenchmarkSpec:
    """Build a spec from parsed YAML/JSON; `where` prefixes every error sentence (usually the file name)."""
    return BenchmarkSpec.parse(data, source=where)


def load_grid(path: str | Path) -> BenchmarkSpec:
    """Read and validate a benchmark YAML; its `name` defaults to the file's stem."""
    path = Path(path)
    data = read_yaml(path, "benchmark grid", "search_spaces/benchmark_smoke.yaml")
    if isinstance(data, dict) and "name" not in data:
        stem = re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)
        data = {**data, "name": stem.removeprefix("benchmark_") or "benchmark"}
    return spec_from_mapping(data, str(path))


def resolve_spec(grid: str | Path | None = None, overrides: Any = None, /, **given: Any) -> BenchmarkSpec:
    """The spec of a run: the grid file (or the defaults) with the given overrides (None = not given).

    The command line and the Prefect flow both build their spec here, so they resolve it the same way."""
    spec = load_grid(grid) if grid else BenchmarkSpec()
    return spec.with_overrides(overrides, **given)
