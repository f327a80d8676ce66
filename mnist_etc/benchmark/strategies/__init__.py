"""Search strategies: which point to measure next, behind one small interface (as in Triton's model_analyzer).

    strategy = make_strategy(spec.strategy, plan, budget_ms=20, measurement=spec.measurement)
    for point in strategy.get_configs():          # a generator: it may look at results as they arrive
        result = measure(point)
        strategy.set_last_results([result])

In a grid file a strategy is a name or a name with options, validated like every other setting:

    strategy: adaptive                                       # the default
    strategy: {name: adaptive, options: {finalists: 3, repeats: 3}}
    strategy: brute                                          # every point, once

Strategies: `adaptive` (adaptive.py: climb from the baseline with cheap measurements, re-measure the finalists),
`brute` and `prune_over_budget` (brute.py). Adding one: a module with its `*Settings` model (a `name`
literal and its `options`) and its search class, and one line in each of the two lists below.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field

from mnist_etc.benchmark.strategies.adaptive import AdaptiveOptions, AdaptiveSearch, AdaptiveSettings
from mnist_etc.benchmark.strategies.base import PHASES, Plan, Point, SearchStrategy, plan_configs
from mnist_etc.benchmark.strategies.brute import BruteForceSearch, BruteSettings, PruneOverBudgetSearch, PruneSettings

STRATEGIES = {s.name: s for s in (AdaptiveSearch, BruteForceSearch, PruneOverBudgetSearch)}
DEFAULT_STRATEGY = "adaptive"


def _short_forms(value: Any) -> Any:
    """`adaptive` is short for {name: adaptive}; on the command line `adaptive:finalists=2,repeats=5` gives
    options too (values read as integers, true/false or words)."""
    if not isinstance(value, str):
        return value
    name, _, rest = value.partition(":")
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, text = part.partition("=")
        if not sep:
            raise ValueError(f"strategy option {part!r} is not accepted; write NAME:KEY=VALUE,KEY=VALUE, e.g. "
                             f"adaptive:finalists=2,repeats=5.")
        text = text.strip()
        options[key.strip()] = (int(text) if text.lstrip("-").isdigit() else
                                {"true": True, "false": False}.get(text.lower(), text))
    return {"name": name.strip(), **({"options": options} if options else {})}


def _schema(schema: dict[str, Any]) -> None:
    """The file may give a bare name, as the loader accepts."""
    full = {k: v for k, v in schema.items() if k not in ("title", "description", "default")}
    for key in full:
        schema.pop(key)
    schema["anyOf"] = [{"type": "string", "enum": list(STRATEGIES)}, full]


StrategySettings = Annotated[Union[AdaptiveSettings, BruteSettings, PruneSettings],
                             Field(discriminator="name", json_schema_extra=_schema), BeforeValidator(_short_forms)]


def describe_strategy(strategy: Any) -> str:
    """A strategy's settings as the log and the summary show them: `adaptive (screen descend, finalists 3, ...)`."""
    options = strategy.options.to_dict()
    return strategy.name + (f" ({', '.join(f'{k} {v}' for k, v in options.items())})" if options else "")


def make_strategy(strategy: Any, plan: Plan, budget_ms: float | None = None, objective: str = "throughput",
                  measurement: Any = None, request_batch_size: int = 1) -> SearchStrategy:
    """The search of `strategy` (its validated settings, or a bare name) over `plan`, with requests of
    `request_batch_size` images."""
    name = strategy if isinstance(strategy, str) else strategy.name
    options = None if isinstance(strategy, str) else strategy.options
    return STRATEGIES[name](plan, budget_ms, objective, measurement, options, request_batch_size=request_batch_size)


__all__ = ["PHASES", "STRATEGIES", "DEFAULT_STRATEGY", "AdaptiveOptions", "Plan", "Point", "SearchStrategy",
           "StrategySettings", "describe_strategy", "make_strategy", "plan_configs"]
