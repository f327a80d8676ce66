"""Optuna samplers of a sweep: which ones, their options (typed), and how each is built.

    sampler: {name: tpe, seed: 0, options: {n_startup_trials: 4}}      # in a search space; or just `sampler: tpe`

An option of another sampler, or a bad value, is refused with one sentence when the search space is read.
`make_sampler` builds the Optuna object; only options the file gives are passed, so the rest keep Optuna's
defaults. Adding a sampler: a `*Options` model, a `*Sampler` model with its `name` literal, one line in
`Sampler` and one branch in `make_sampler`.
"""
from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from mnist_etc.config import Settings

Probability = Annotated[float, Field(ge=0, le=1)]


class TpeOptions(Settings):
    n_startup_trials: int = Field(10, ge=0, description="random trials before TPE models the objectives")
    n_ei_candidates: int = Field(24, ge=1, description="candidates scored per suggestion")
    multivariate: bool = Field(False, description="model the parameters jointly")
    constant_liar: bool = Field(False, description="avoid suggesting what running trials already explore")


class Nsga2Options(Settings):
    population_size: int = Field(50, ge=2, description="trials per generation (at most the sweep's trials)")
    mutation_prob: Probability | None = Field(None, description="null = 1 / number of parameters")
    crossover_prob: Probability = Field(0.9, description="probability of crossover per child")
    swapping_prob: Probability = Field(0.5, description="probability of swapping each parameter in crossover")


class NoOptions(Settings):
    pass


class _SamplerBase(Settings):
    seed: int = Field(0, ge=0, description="seed of the sampler (a resumed sweep adds the trials already made)")

    def given_options(self) -> dict[str, Any]:
        """The options the file gave; the rest stay Optuna's defaults."""
        options = getattr(self, "options")
        return {k: getattr(options, k) for k in options.model_fields_set}


class TpeSampler(_SamplerBase):
    name: Literal["tpe"] = "tpe"
    options: TpeOptions = Field(default_factory=TpeOptions)


class Nsga2Sampler(_SamplerBase):
    name: Literal["nsga2"]
    options: Nsga2Options = Field(default_factory=Nsga2Options)


class RandomSampler(_SamplerBase):
    name: Literal["random"]
    seed: Annotated[int, Field(ge=0)] | None = Field(None, description=(
        "null (default): a secret seed from OS entropy at each start, which a private random search needs; an "
        "integer repeats the draws (the search is then accounted by composition)"))
    options: NoOptions = Field(default_factory=NoOptions)


class GridSampler(_SamplerBase):
    name: Literal["grid"]
    options: NoOptions = Field(default_factory=NoOptions)


Sampler = Annotated[Union[TpeSampler, Nsga2Sampler, RandomSampler, GridSampler], Field(discriminator="name")]
NAMES = ("tpe", "nsga2", "random", "grid")


def make_sampler(sampler: Any, grid: dict[str, list[Any]], seed: int) -> Any:
    """The Optuna sampler of a search space's `sampler` settings; `grid` is the space's grid (grid sampler)."""
    import optuna

    options = sampler.given_options()
    if sampler.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **options)
    if sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    if sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return _ask_tell_grid_sampler()(grid, seed=seed)


@functools.cache
def _ask_tell_grid_sampler() -> type:
    from optuna.samplers import GridSampler as OptunaGridSampler

    class AskTellGridSampler(OptunaGridSampler):
        """GridSampler whose after_trial does not call study.stop(): outside optimize() that raises, and the
        search space already caps trials at the grid size."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler
