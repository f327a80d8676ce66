"""What a sweep explores, read from `search_spaces/*.yaml` and validated before any training starts.

    >>> space = load_search_space("search_spaces/smoke.yaml")
    >>> space = space.with_overrides(trials=8, parallelism=2)      # command line over YAML over default
    >>> space.train_config({"hid_dim": 16}).hid_dim
    16

Every mistake a user can make in the file (unknown keys, empty or inverted ranges, unknown samplers,
settings that conflict) raises `UserError` with one sentence naming the file, the key and what is
accepted. The schema is documented in `search_spaces/README.md`.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnist_etc.config import AttackConfig, DataConfig, TrainConfig, from_dict, to_dict
from mnist_etc.errors import UserError
from mnist_etc.names import validate_name

PARAM_TYPES = ("int", "float", "categorical")
# Select on validation accuracy: the test split is for reporting the winner, not for choosing it.
ACCURACY_METRICS = ("val_accuracy", "test_accuracy")
# Each is higher when the attack reconstructs better (more leakage), so it is always minimised. The first,
# the excess cosine over the label-only baseline, is the headline; `_high` is its 95% interval's upper end.
LEAKAGE_METRICS = ("excess_cosine", "excess_cosine_high", "member_excess_cosine", "identification_rate",
                   "direct_cosine", "perceptual_cosine_1", "perceptual_cosine_2", "ssim", "psnr", "class_match")
DIRECTIONS = ("maximize", "minimize")       # accuracy, leakage
FALLBACKS = ("lowest_leakage", "highest_accuracy", "none")
TOP_LEVEL_KEYS = ("study", "description", "sampler", "trials", "parallelism", "stale_trial_retries",
                  "objectives", "params", "fixed", "attack", "data", "winner")
# Option name -> (check, what is accepted) per sampler; the sampler's seed is `sampler.seed`.
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_INT0 = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0")
_INT1 = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
_INT2 = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2, "an integer >= 2")
_PROB = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_PROB_OR_NULL = (lambda v: v is None or (_is_number(v) and 0 <= v <= 1), "a number in [0, 1] or null")
SAMPLER_OPTIONS: dict[str, dict[str, tuple[Any, str]]] = {
    "tpe": {"n_startup_trials": _INT0, "n_ei_candidates": _INT1, "multivariate": _BOOL, "constant_liar": _BOOL},
    "nsga2": {"population_size": _INT2, "mutation_prob": _PROB_OR_NULL, "crossover_prob": _PROB,
              "swapping_prob": _PROB},
    "random": {},
    "grid": {},
}
# Beyond this many corner combinations, each parameter's extremes are checked against the others' lows.
_MAX_CORNER_CHECKS = 4096


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_study_name(name: Any, where: str = "study") -> str:
    return validate_name(name, where)


@dataclass(frozen=True)
class ParamSpec:
    """One searched TrainConfig field: an int or float range (optionally log scale or stepped) or choices."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)
        return CategoricalDistribution(list(self.choices))

    def grid_values(self) -> list[Any] | None:
        """Every value of the parameter, or None for a continuous float (which a grid cannot enumerate)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + k * self.step, 12) for k in range(n + 1)]

    def extremes(self) -> list[Any]:
        """The values that decide whether every sampled config is valid: both ends, or every choice."""
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.kind}
        if self.kind == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high)
            if self.step is not None:
                d["step"] = self.step
            if self.log:
                d["log"] = True
        return d


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "tpe"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WinnerPolicy:
    """Highest accuracy among trials with leakage <= max_leakage and epsilon <= max_epsilon (None: no
    bound); ties go to lower leakage, then lower epsilon, then the earlier trial. When no trial
    qualifies, `fallback` decides: the lowest-leakage trial, the highest-accuracy trial, or no winner."""

    max_leakage: float | None = None
    max_epsilon: float | None = None
    fallback: str = "lowest_leakage"

    def describe(self, leakage_metric: str = "leakage") -> str:
        bounds = []
        if self.max_leakage is not None:
            bounds.append(f"{leakage_metric} <= {self.max_leakage:g}")
        if self.max_epsilon is not None:
            bounds.append(f"epsilon <= {self.max_epsilon:g}")
        if not bounds:
            return "highest accuracy (no bounds)"
        among = f" among trials with {' and '.join(bounds)}"
        fallback = {"lowest_leakage": f"the lowest {leakage_metric}", "highest_accuracy": "the highest accuracy",
                    "none": "no winner"}[self.fallback]
        return f"highest accuracy{among}; if none qualifies: {fallback}"


@dataclass(frozen=True)
class SearchSpace:
    study: str
    sampler: SamplerSpec
    trials: int
    parallelism: int
    stale_trial_retries: int
    accuracy_metric: str
    leakage_metric: str
    params: tuple[ParamSpec, ...]
    fixed: dict[str, Any]
    attack: AttackConfig
    data: DataConfig
    winner: WinnerPolicy
    description: str = ""
    source: str = "<search space>"

    @property
    def directions(self) -> list[str]:
        return list(DIRECTIONS)

    @property
    def objective_names(self) -> list[str]:
        return [self.accuracy_metric, self.leakage_metric]

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution() for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        return {p.name: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def train_config(self, params: dict[str, Any]) -> TrainConfig:
        return TrainConfig(**{**self.fixed, **params})

    def with_overrides(self, *, study: str | None = None, trials: int | None = None,
                       parallelism: int | None = None) -> "SearchSpace":
        """Command-line values over the file's; validated like the file's."""
        values = {k: v for k, v in (("study", study), ("trials", trials), ("parallelism", parallelism))
                  if v is not None}
        if "study" in values:
            validate_study_name(values["study"], "--study")
        for key in ("trials", "parallelism"):
            if key in values:
                v = values[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise UserError(f"--{key} must be an integer >= 1, got {v!r}.")
        space = dataclasses.replace(self, **values)
        _check_sampler_fits(space)
        return space

    def fingerprint(self) -> dict[str, Any]:
        """What a study's trials depend on: resuming a study with a different fingerprint would mix
        incomparable trials. Trials, parallelism, sampler, retries and the winner policy may change."""
        return {"objectives": {"accuracy": self.accuracy_metric, "leakage": self.leakage_metric},
                "params": {p.name: p.to_dict() for p in self.params}, "fixed": dict(self.fixed),
                "attack": to_dict(self.attack), "data": to_dict(self.data)}

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "description": self.description,
                "sampler": {"name": self.sampler.name, "seed": self.sampler.seed, "options": self.sampler.options},
                "trials": self.trials, "parallelism": self.parallelism,
                "stale_trial_retries": self.stale_trial_retries,
                "objectives": {"accuracy": self.accuracy_metric, "leakage": self.leakage_metric},
                "params": {p.name: p.to_dict() for p in self.params}, "fixed": dict(self.fixed),
                "attack": to_dict(self.attack), "data": to_dict(self.data),
                "winner": dataclasses.asdict(self.winner)}


# ---------------------------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads 1e-3 as a float (YAML 1.1 wants 1.0e-3)."""


def _mapping_no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise UserError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; give each key once.")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_search_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search space {str(path)!r} does not exist; pass a YAML file such as "
                        f"search_spaces/smoke.yaml.")
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where} ({problem}).") from None
    return parse_search_space(raw, source=str(path))


def parse_search_space(raw: Any, source: str = "<search space>") -> SearchSpace:
    """Validate a mapping (as read from YAML) into a SearchSpace; one UserError sentence per mistake."""

    def fail(where: str, message: str) -> UserError:
        return UserError(f"{source}: {where}: {message}")

    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{source}: a search space must be a YAML mapping with at least 'params', "
                        f"got {type(raw).__name__ if raw is not None else 'an empty file'}.")
    _reject_unknown(raw, TOP_LEVEL_KEYS, source, "top level")

    study = raw.get("study", Path(source).stem)
    try:
        validate_study_name(study)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail("description", f"must be text, got {description!r}.")

    trials = _int_setting(raw, "trials", 1, default=20, fail=fail)
    parallelism = _int_setting(raw, "parallelism", 1, default=1, fail=fail)
    retries = _int_setting(raw, "stale_trial_retries", 0, default=1, fail=fail)
    sampler = _parse_sampler(raw.get("sampler", "tpe"), fail)
    accuracy_metric, leakage_metric = _parse_objectives(raw.get("objectives", {}), source, fail)

    fixed = raw.get("fixed", {}) or {}
    if not isinstance(fixed, dict):
        raise fail("fixed", f"must be a mapping of training settings, got {fixed!r}.")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown_fixed = sorted(set(fixed) - train_fields)
    if unknown_fixed:
        raise fail("fixed", f"unknown training setting(s) {', '.join(map(str, unknown_fixed))}; accepted: "
                            f"{', '.join(sorted(train_fields))}.")

    params_raw = raw.get("params")
    if not isinstance(params_raw, dict) or not params_raw:
        raise fail("params", "must map at least one training setting to a range or choices, e.g. "
                             "hid_dim: {type: int, low: 8, high: 64}.")
    params = tuple(_parse_param(name, spec, train_fields, fail) for name, spec in params_raw.items())
    both = sorted(set(fixed) & {p.name for p in params})
    if both:
        raise fail("params", f"{', '.join(both)} is both searched (params) and fixed; keep it in one of them.")

    attack = _sub_config(AttackConfig, raw.get("attack", {}), "attack", fail)
    data = _sub_config(DataConfig, raw.get("data", {}), "data", fail)
    winner = _parse_winner(raw.get("winner", {}) or {}, source, fail)

    space = SearchSpace(study=study, sampler=sampler, trials=trials, parallelism=parallelism,
                        stale_trial_retries=retries, accuracy_metric=accuracy_metric,
                        leakage_metric=leakage_metric, params=params, fixed=dict(fixed), attack=attack,
                        data=data, winner=winner, description=description, source=source)
    _check_corners(space, fail)
    _check_sampler_fits(space)
    return space


def _reject_unknown(mapping: dict[str, Any], accepted: tuple[str, ...] | list[str], source: str,
                    where: str) -> None:
    unknown = sorted(str(k) for k in set(mapping) - set(accepted))
    if unknown:
        raise UserError(f"{source}: {where}: unknown key(s) {', '.join(unknown)}; accepted: "
                        f"{', '.join(accepted)}.")


def _int_setting(raw: dict[str, Any], key: str, low: int, default: int, fail: Any) -> int:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise fail(key, f"must be an integer >= {low}, got {v!r}.")
    return v


def _parse_sampler(raw: Any, fail: Any) -> SamplerSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise fail("sampler", f"must be a sampler name or a mapping with name, seed and options, got {raw!r}.")
    unknown = sorted(set(raw) - {"name", "seed", "options"})
    if unknown:
        raise fail("sampler", f"unknown key(s) {', '.join(map(str, unknown))}; accepted: name, seed, options.")
    name = raw.get("name", "tpe")
    if name not in SAMPLER_OPTIONS:
        raise fail("sampler.name", f"unknown sampler {name!r}; accepted: {', '.join(SAMPLER_OPTIONS)}.")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise fail("sampler.seed", f"must be an integer >= 0, got {seed!r}.")
    options = raw.get("options", {}) or {}
    if not isinstance(options, dict):
        raise fail("sampler.options", f"must be a mapping, got {options!r}.")
    accepted = SAMPLER_OPTIONS[name]
    for key, value in options.items():
        if key not in accepted:
            listed = ", ".join(accepted) if accepted else "none"
            raise fail("sampler.options", f"{key!r} is not an option of the {name} sampler; accepted: {listed}.")
        check, what = accepted[key]
        if not check(value):
            raise fail(f"sampler.options.{key}", f"must be {what}, got {value!r}.")
    return SamplerSpec(name, seed, dict(options))


def _parse_objectives(raw: Any, source: str, fail: Any) -> tuple[str, str]:
    if not isinstance(raw, dict):
        raise fail("objectives", f"must be a mapping with accuracy and leakage, got {raw!r}.")
    _reject_unknown(raw, ("accuracy", "leakage"), source, "objectives")
    accuracy = raw.get("accuracy", ACCURACY_METRICS[0])
    leakage = raw.get("leakage", LEAKAGE_METRICS[0])
    if accuracy not in ACCURACY_METRICS:
        raise fail("objectives.accuracy", f"unknown metric {accuracy!r} (maximised); accepted: "
                                          f"{', '.join(ACCURACY_METRICS)}.")
    if leakage not in LEAKAGE_METRICS:
        raise fail("objectives.leakage", f"unknown metric {leakage!r} (minimised); accepted: "
                                         f"{', '.join(LEAKAGE_METRICS)}.")
    return accuracy, leakage


def _parse_param(name: Any, spec: Any, train_fields: set[str], fail: Any) -> ParamSpec:
    where = f"params.{name}"
    if name not in train_fields:
        raise fail("params", f"{name!r} is not a training setting; accepted: {', '.join(sorted(train_fields))}.")
    if not isinstance(spec, dict):
        raise fail(where, f"must be a mapping such as {{type: int, low: 8, high: 64}}, got {spec!r}.")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise fail(where, f"type must be one of {', '.join(PARAM_TYPES)}, got {kind!r}.")
    accepted = ("type", "choices") if kind == "categorical" else ("type", "low", "high", "step", "log")
    unknown = sorted(str(k) for k in set(spec) - set(accepted))
    if unknown:
        raise fail(where, f"unknown key(s) {', '.join(unknown)} for {'an' if kind == 'int' else 'a'} {kind} "
                          f"parameter; accepted: "
                          f"{', '.join(accepted)}.")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail(where, f"choices must be a non-empty list, got {choices!r}.")
        for c in choices:
            if c is not None and not isinstance(c, (str, int, float, bool)):
                raise fail(where, f"choice {c!r} is not a number, text, true/false or null.")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise fail(where, f"choices {choices!r} repeat a value; list each once.")
        if len(choices) == 1:
            raise fail(where, f"a single choice {choices[0]!r} is an empty search; put {name} under fixed.")
        return ParamSpec(name, kind, choices=tuple(choices))

    for key in ("low", "high"):
        if key not in spec:
            raise fail(where, f"a {kind} parameter needs '{key}'.")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    if kind == "int":
        for key, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise fail(where, f"{key} must be an integer, got {v!r}.")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
            raise fail(where, f"step must be an integer >= 1, got {step!r}.")
    else:
        for key, v in (("low", low), ("high", high)):
            if not _is_number(v):
                raise fail(where, f"{key} must be a finite number, got {v!r}.")
        low, high = float(low), float(high)
        if step is not None:
            if not _is_number(step) or step <= 0:
                raise fail(where, f"step must be a number > 0, got {step!r}.")
            step = float(step)
    if not isinstance(log, bool):
        raise fail(where, f"log must be true or false, got {log!r}.")
    if low > high:
        raise fail(where, f"inverted range: low {low!r} is above high {high!r}; give low < high.")
    if low == high:
        raise fail(where, f"empty range: low and high are both {low!r}; put {name} under fixed instead.")
    if log and step is not None and step != 1:
        raise fail(where, f"log and step {step!r} conflict (a log-scale range cannot be stepped); drop one.")
    if log and low <= 0:
        raise fail(where, f"a log-scale range needs low > 0, got {low!r}.")
    if step is not None:
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise fail(where, f"high - low ({high - low:g}) is not a multiple of step {step:g}; adjust high.")
    if log and kind == "int":
        step = None  # Optuna's log-scale ints have no step; step 1 is what they mean
    return ParamSpec(name, kind, low=low, high=high, step=step, log=log)


def _sub_config(cls: type, raw: Any, where: str, fail: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise fail(where, f"must be a mapping of {cls.__name__} settings, got {raw!r}.")
    try:
        return from_dict(cls, raw)
    except (UserError, TypeError) as exc:
        raise fail(where, str(exc)) from None


def _parse_winner(raw: Any, source: str, fail: Any) -> WinnerPolicy:
    if not isinstance(raw, dict):
        raise fail("winner", f"must be a mapping with max_leakage, max_epsilon and fallback, got {raw!r}.")
    _reject_unknown(raw, ("max_leakage", "max_epsilon", "fallback"), source, "winner")
    for key in ("max_leakage", "max_epsilon"):
        v = raw.get(key)
        if v is not None and not _is_number(v):
            raise fail(f"winner.{key}", f"must be a finite number or null (no bound), got {v!r}.")
    if raw.get("max_epsilon") is not None and raw["max_epsilon"] <= 0:
        raise fail("winner.max_epsilon", f"must be > 0 (or null for no bound), got {raw['max_epsilon']!r}.")
    fallback = raw.get("fallback", "lowest_leakage")
    if fallback not in FALLBACKS:
        raise fail("winner.fallback", f"unknown fallback {fallback!r}; accepted: {', '.join(FALLBACKS)}.")
    return WinnerPolicy(raw.get("max_leakage"), raw.get("max_epsilon"), fallback)


def _check_corners(space: SearchSpace, fail: Any) -> None:
    """Every config the sampler can produce must be a valid TrainConfig: build each corner of the box."""
    names = [p.name for p in space.params]
    values = [p.extremes() for p in space.params]
    if math.prod(len(v) for v in values) <= _MAX_CORNER_CHECKS:
        combos = itertools.product(*values)
    else:
        base = [v[0] for v in values]
        combos = (tuple(base[:i] + [x] + base[i + 1:]) for i, vs in enumerate(values) for x in vs)
    for combo in combos:
        params = dict(zip(names, combo))
        try:
            space.train_config(params)
        except (UserError, TypeError) as exc:
            raise fail("params", f"the setting {params} with fixed {space.fixed} is not a valid training "
                                 f"config ({str(exc).rstrip('.')}).") from None


def _check_sampler_fits(space: SearchSpace) -> None:
    where = f"{space.source}: sampler"
    if space.sampler.name == "grid":
        continuous = [p.name for p in space.params if p.grid_values() is None]
        if continuous:
            raise UserError(f"{where}: the grid sampler cannot enumerate float parameter(s) "
                            f"{', '.join(continuous)} without a step; give each a step or use another sampler.")
        size = space.grid_size()
        if space.trials > size:
            raise UserError(f"{where}: {space.trials} trials exceed the {size} points of the grid; ask for at "
                            f"most {size} trials or use another sampler.")
    if space.sampler.name == "nsga2":
        pop = space.sampler.options.get("population_size", 50)
        if pop > space.trials:
            raise UserError(f"{where}: nsga2 population_size {pop} exceeds the {space.trials} trials, so it "
                            f"would never leave its random first generation; lower population_size or "
                            f"raise trials.")
