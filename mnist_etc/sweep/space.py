"""What a sweep explores, read from `search_spaces/*.yaml` and validated before any training starts.

    >>> space = load_search_space("search_spaces/smoke.yaml")
    >>> space = space.with_overrides(trials=8, parallelism=2)      # command line over YAML over default
    >>> space.train_config({"hid_dim": 16}).hid_dim
    16

The file's schema is the `SearchSpace` model (its JSON Schema, for editors, is search_spaces/schema/
search-space.json, made by `make schemas`). Every mistake (unknown keys, empty or inverted ranges, unknown
samplers, settings that conflict) raises `UserError` with one sentence naming the file, the key path and what
is accepted. Rules across fields are the named validators below each model.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, PrivateAttr, field_validator, model_validator

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, Settings, TrainConfig, read_yaml
from mnist_etc.errors import UserError
from mnist_etc.names import validate_name
from mnist_etc.sweep.samplers import NAMES as SAMPLERS, Sampler, TpeSampler

# Select on validation accuracy: the test split is for reporting the winner, not for choosing it.
ACCURACY_METRICS = ("val_accuracy", "test_accuracy")
# Each is higher when the attack reconstructs better (more leakage), so it is always minimised. The first,
# the excess cosine over the label-only baseline, is the headline; `_high` is its 95% interval's upper end.
# A sweep attacks held-out non-members only (attack.members is false): none of these reads the training split.
LEAKAGE_METRICS = ("excess_cosine", "excess_cosine_high", "identification_rate",
                   "direct_cosine", "perceptual_cosine_1", "perceptual_cosine_2", "ssim", "psnr", "class_match")
DIRECTIONS = ("maximize", "minimize")       # accuracy, leakage
TRAIN_FIELDS = tuple(TrainConfig.model_fields)
# Beyond this many corner combinations, each parameter's extremes are checked against the others' lows.
_MAX_CORNER_CHECKS = 4096


def validate_study_name(name: Any, where: str = "study") -> str:
    return validate_name(name, where)


# ------------------------------------------------------------------------------------------- params


class _Range(Settings):
    """What int and float ranges share: their checks, extremes and record."""

    @model_validator(mode="after")
    def _valid_range(self) -> "_Range":
        low, high, step, log = self.low, self.high, self.step, self.log
        if low > high:
            raise ValueError(f"inverted range: low {low!r} is above high {high!r}; give low < high.")
        if low == high:
            raise ValueError(f"empty range: low and high are both {low!r}; put it under fixed instead.")
        if log and step is not None and step != 1:
            raise ValueError(f"log and step {step!r} conflict (a log-scale range cannot be stepped); drop one.")
        if log and low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got {low!r}.")
        if step is not None:
            n = (high - low) / step
            if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
                raise ValueError(f"high - low ({high - low:g}) is not a multiple of step {step:g}; adjust high.")
        return self

    def extremes(self) -> list[Any]:
        """The values that decide whether every sampled config is valid: both ends."""
        return [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.step is not None:
            d["step"] = self.step
        if self.log:
            d["log"] = True
        return d


class IntParam(_Range):
    """An integer range, end included; `log: true` samples on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    step: Annotated[int, Field(ge=1)] | None = None
    log: bool = False

    def distribution(self) -> Any:
        from optuna.distributions import IntDistribution

        # Optuna's log-scale ints have no step; step 1 is what they mean.
        return IntDistribution(self.low, self.high, log=self.log, step=1 if self.log else (self.step or 1))

    def grid_values(self) -> list[Any]:
        return list(range(self.low, self.high + 1, self.step or 1))


class FloatParam(_Range):
    """A float range; a `step` makes it discrete (and enumerable by the grid sampler)."""

    type: Literal["float"]
    low: float
    high: float
    step: Annotated[float, Field(gt=0)] | None = None
    log: bool = False

    def distribution(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> list[Any] | None:
        """Every value, or None for a continuous range (which a grid cannot enumerate)."""
        if self.step is None:
            return None
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + k * self.step, 12) for k in range(n + 1)]


class CategoricalParam(Settings):
    """A list of choices (numbers, text, true/false or null), each listed once."""

    type: Literal["categorical"]
    choices: list[str | bool | int | float | None]

    @field_validator("choices")
    @classmethod
    def _two_distinct_choices(cls, choices: list[Any]) -> list[Any]:
        if not choices:
            raise ValueError("choices must be a non-empty list, got [].")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise ValueError(f"choices {choices!r} repeat a value; list each once.")
        if len(choices) == 1:
            raise ValueError(f"a single choice {choices[0]!r} is an empty search; put the setting under fixed.")
        return choices

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.choices))

    def grid_values(self) -> list[Any]:
        return list(self.choices)

    def extremes(self) -> list[Any]:
        return list(self.choices)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "choices": list(self.choices)}


Param = Annotated[Union[IntParam, FloatParam, CategoricalParam], Field(discriminator="type")]


# ------------------------------------------------------------------------------ objectives and winner


class Objectives(Settings):
    accuracy: Literal[ACCURACY_METRICS] = Field("val_accuracy", description="maximised")
    leakage: Literal[LEAKAGE_METRICS] = Field("excess_cosine", description="minimised")


class WinnerPolicy(Settings):
    """Highest accuracy among trials with leakage <= max_leakage and epsilon <= max_epsilon (null: no
    bound); ties go to lower leakage, then lower epsilon, then the earlier trial. When no trial
    qualifies, `fallback` decides: the lowest-leakage trial, the highest-accuracy trial, or no winner."""

    max_leakage: float | None = Field(None, description="bound on the leakage objective; null = none")
    max_epsilon: Annotated[float, Field(gt=0)] | None = Field(None, description="bound on epsilon; null = none")
    fallback: Literal["lowest_leakage", "highest_accuracy", "none"] = "lowest_leakage"

    def describe(self, leakage_metric: str = "leakage") -> str:
        bounds = []
        if self.max_leakage is not None:
            bounds.append(f"{leakage_metric} <= {self.max_leakage:g}")
        if self.max_epsilon is not None:
            bounds.append(f"epsilon (and an accounted search's epsilon_search) <= {self.max_epsilon:g}")
        if not bounds:
            return "highest accuracy (no bounds)"
        among = f" among trials with {' and '.join(bounds)}"
        fallback = {"lowest_leakage": f"the lowest {leakage_metric}", "highest_accuracy": "the highest accuracy",
                    "none": "no winner"}[self.fallback]
        return f"highest accuracy{among}; if none qualifies: {fallback}"


# ------------------------------------------------------------------------------------ search space


class SearchSpace(Settings):
    """A sweep: which TrainConfig settings are searched (params) or held (fixed), how trials are scored and
    chosen, and the attack and data every trial uses."""

    study: str = Field("sweep", description=(
        "Optuna study name, also the folder artifacts/sweeps/<study>; in a file, default: the file's name"))
    description: str = ""
    sampler: Sampler = Field(default_factory=TpeSampler, description="a sampler name, or name, seed and options")
    trials: int = Field(20, ge=1, description="trials to finish (failed ones are not counted)")
    parallelism: int = Field(1, ge=1, description="trials in flight at once")
    stale_trial_retries: int = Field(1, ge=0, description="re-runs of a trial a stopped sweep left RUNNING")
    search_accounting: Literal["private", "none"] = Field("private", description=(
        "private: the champion's epsilon_search covers the search that chose it (a random search with a secret "
        "seed: Papernot-Steinke over K random trials; an adaptive sampler: the trials compose); none: not "
        "accounted, the champion's epsilon covers its own training only"))
    trial_count: Literal["logarithmic", "geometric", "poisson"] = Field("logarithmic", description=(
        "a private random search runs K trials, K drawn in secret from this distribution with mean `trials`"))
    objectives: Objectives = Field(default_factory=Objectives)
    params: dict[str, Param] = Field(description="searched TrainConfig settings, each a range or choices",
                                     json_schema_extra={"propertyNames": {"enum": list(TRAIN_FIELDS)},
                                                        "minProperties": 1})
    fixed: dict[str, Any] = Field(default_factory=dict, description="TrainConfig settings held constant",
                                  json_schema_extra={"propertyNames": {"enum": list(TRAIN_FIELDS)}})
    attack: AttackConfig = Field(default_factory=lambda: AttackConfig(members=False), description=(
        "the attack every trial runs, on held-out non-members only (members: false)"))
    data: DataConfig = Field(default_factory=DataConfig)
    winner: WinnerPolicy = Field(default_factory=WinnerPolicy)
    _source: str = PrivateAttr("<search space>")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # `sampler: tpe` is short for `sampler: {name: tpe}`: the schema accepts both, as the loader does.
        schema = handler.resolve_ref_schema(handler(core_schema))
        full = schema["properties"]["sampler"]
        schema["properties"]["sampler"] = {"anyOf": [{"enum": list(SAMPLERS), "type": "string"}, full],
                                           "description": full.get("description", "")}
        return schema

    @field_validator("sampler", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            return {**value, "name": "tpe"}
        return value

    @field_validator("study")
    @classmethod
    def _study_name(cls, value: str) -> str:
        return validate_study_name(value)

    @field_validator("params")
    @classmethod
    def _training_settings_searched(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not params:
            raise ValueError("params must map at least one training setting to a range or choices, e.g. "
                             "hid_dim: {type: int, low: 8, high: 64}.")
        unknown = [name for name in params if name not in TRAIN_FIELDS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a training setting; accepted: "
                             f"{', '.join(sorted(TRAIN_FIELDS))}.")
        return params

    @field_validator("fixed", mode="before")
    @classmethod
    def _training_settings_fixed(cls, fixed: Any) -> Any:
        if fixed is None:
            return {}
        if isinstance(fixed, dict):
            unknown = sorted(str(k) for k in fixed if k not in TRAIN_FIELDS)
            if unknown:
                raise ValueError(f"unknown training setting(s) {', '.join(unknown)}; accepted: "
                                 f"{', '.join(sorted(TRAIN_FIELDS))}.")
        return fixed

    @model_validator(mode="after")
    def _every_sampled_config_trains(self) -> "SearchSpace":
        both = sorted(set(self.fixed) & set(self.params))
        if both:
            raise ValueError(f"params: {', '.join(both)} is both searched (params) and fixed; keep it in one of them.")
        names = list(self.params)
        values = [p.extremes() for p in self.params.values()]
        if math.prod(len(v) for v in values) <= _MAX_CORNER_CHECKS:
            combos = itertools.product(*values)
        else:
            base = [v[0] for v in values]
            combos = (tuple(base[:i] + [x] + base[i + 1:]) for i, vs in enumerate(values) for x in vs)
        for combo in combos:
            params = dict(zip(names, combo))
            try:
                self.train_config(params)
            except UserError as exc:
                raise ValueError(f"params: the setting {params} with fixed {self.fixed} is not a valid training "
                                 f"config ({str(exc).rstrip('.')}).") from None
        return self

    @field_validator("attack", mode="before")
    @classmethod
    def _non_members_only(cls, value: Any) -> Any:
        # What a trial measures steers the sampler and the winner policy, and is published per trial: a
        # statistic of training members there would be a non-private release the accounting never saw.
        members = value.get("members") if isinstance(value, dict) else getattr(value, "members", None)
        if members is True and not (isinstance(value, AttackConfig) and "members" not in value.model_fields_set):
            raise ValueError("members must be false in a sweep: its selection may not read statistics "
                             "of the training split (the member - non-member gap is the audit's, "
                             "'mnist-etc audit'); drop it.")
        if isinstance(value, AttackConfig):
            return value.replace(members=False)   # an attack built without saying: the sweep's own default
        return {**value, "members": False} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _sampler_fits(self) -> "SearchSpace":
        if self.sampler.name == "grid":
            continuous = [name for name, p in self.params.items() if p.grid_values() is None]
            if continuous:
                raise ValueError(f"sampler: the grid sampler cannot enumerate float parameter(s) "
                                 f"{', '.join(continuous)} without a step; give each a step or use another sampler.")
            size = self.grid_size()
            if self.trials > size:
                raise ValueError(f"sampler: {self.trials} trials exceed the {size} points of the grid; ask for at "
                                 f"most {size} trials or use another sampler.")
        if self.sampler.name == "nsga2":
            pop = self.sampler.options.population_size
            if pop > self.trials:
                raise ValueError(f"sampler: nsga2 population_size {pop} exceeds the {self.trials} trials, so it "
                                 f"would never leave its random first generation; lower population_size or "
                                 f"raise trials.")
        return self

    # -- what the sweep reads -------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self._source

    @property
    def accuracy_metric(self) -> str:
        return self.objectives.accuracy

    @property
    def leakage_metric(self) -> str:
        return self.objectives.leakage

    @property
    def directions(self) -> list[str]:
        return list(DIRECTIONS)

    @property
    def objective_names(self) -> list[str]:
        return [self.accuracy_metric, self.leakage_metric]

    def distributions(self) -> dict[str, Any]:
        return {name: p.distribution() for name, p in self.params.items()}

    def grid(self) -> dict[str, list[Any]]:
        return {name: p.grid_values() for name, p in self.params.items()}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def train_config(self, params: dict[str, Any]) -> TrainConfig:
        return TrainConfig(**{**self.fixed, **params})

    def with_overrides(self, *, study: str | None = None, trials: int | None = None,
                       parallelism: int | None = None) -> "SearchSpace":
        """Command-line values over the file's; validated like the file's, errors naming the option."""
        values = {k: v for k, v in (("study", study), ("trials", trials), ("parallelism", parallelism))
                  if v is not None}
        if not values:
            return self
        try:
            return self.replace(**values)
        except UserError as exc:
            message = str(exc).removeprefix(f"{self.source}: ")
            for key in values:
                for said in (f"{key} ", f"{key} name "):
                    if message.startswith(said):
                        message = f"--{said}{message[len(said):]}"
                        break
            raise UserError(message) from None

    def replace(self, **changes: Any) -> "SearchSpace":
        space = SearchSpace.parse({**self.model_dump(exclude_unset=True), **changes}, source=self.source)
        space._source = self._source
        return space

    def fingerprint(self) -> dict[str, Any]:
        """What a study's trials depend on: resuming a study with a different fingerprint would mix
        incomparable trials. Trials, parallelism, sampler, retries and the winner policy may change."""
        return {"objectives": self.objectives.to_dict(),
                "params": {name: p.to_dict() for name, p in self.params.items()}, "fixed": dict(self.fixed),
                "attack": self.attack.to_dict(), "data": self.data.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "params": {name: p.to_dict() for name, p in self.params.items()}}


def load_search_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    raw = read_yaml(path, "search space", "search_spaces/smoke.yaml")
    return parse_search_space(raw, source=str(path))


def parse_search_space(raw: Any, source: str = "<search space>") -> SearchSpace:
    """Validate a mapping (as read from YAML) into a SearchSpace; its study defaults to the file's name."""
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{source}: a search space must be a YAML mapping with at least 'params', "
                        f"got {type(raw).__name__ if raw is not None else 'an empty file'}.")
    if "params" not in raw:
        raise UserError(f"{source}: params must map at least one training setting to a range or choices, e.g. "
                        f"hid_dim: {{type: int, low: 8, high: 64}}.")
    space = SearchSpace.parse({"study": Path(source).stem, **raw}, source=source)
    space._source = source
    return space


__all__ = ["ACCURACY_METRICS", "LEAKAGE_METRICS", "SAMPLERS", "CategoricalParam", "FloatParam", "IntParam",
           "Objectives", "SearchSpace", "WinnerPolicy", "load_search_space", "parse_search_space",
           "validate_study_name"]
