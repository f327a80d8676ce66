"""Sweeps: Optuna trials over training settings, scored on validation accuracy (max) and attack leakage (min).

    from mnist_etc.sweep import LocalRunner, SweepOptions, load_search_space, run_sweep

    space = load_search_space("search_spaces/smoke.yaml")
    summary = run_sweep(space, SweepOptions.build(), LocalRunner(space.parallelism))

Modules: `space` (the search-space model and its YAML), `samplers` (sampler options and construction),
`storage` (study storage URLs, SQLite WAL), `study` (create/resume, stale trials), `trial` (one trial: train,
attack, publish), `runner` (the TrialRunner interface), `orchestrator` (the ask/tell loop), `transport` (a
trial's files through its MLflow run), `winner` (policy, Pareto front), `reports` (plot, CSV, summary). MLflow
itself is `mnist_etc.tracking` (`tracking.sweep.SweepTracker`). No Prefect here: `tasks/trials.py`, `runners/`
and `flows/sweep.py` wrap this. Names are imported on first use, so reading a search space stays light.
"""
from mnist_etc.lazy_exports import lazy_exports

_HOMES = {"SweepOptions": "orchestrator", "SweepSummary": "orchestrator", "run_sweep": "orchestrator",
          "LocalRunner": "runner", "TrialRunner": "runner", "TrialOutcome": "trial", "TrialSpec": "trial",
          "run_trial": "trial", "SearchSpace": "space", "load_search_space": "space"}

__all__ = sorted(_HOMES)

__getattr__ = lazy_exports(__name__, _HOMES)
