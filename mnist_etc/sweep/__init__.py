"""Sweeps: Optuna trials over training settings, scored on test accuracy (max) and attack leakage (min).

    from mnist_etc.search_space import load_search_space
    from mnist_etc.sweep import LocalRunner, SweepOptions, run_sweep

    space = load_search_space("search_spaces/smoke.yaml")
    summary = run_sweep(space, SweepOptions.build(), LocalRunner(space.parallelism))

Modules: `storage` (study storage URLs, SQLite WAL), `study` (create/resume, sampler, stale trials),
`trial` (one trial: train, attack, publish), `runner` (the TrialRunner interface), `orchestrator` (the
ask/tell loop), `tracking` (MLflow), `winner` (policy, Pareto front), `reports` (plot, CSV, summary).
No Prefect here: `tasks/trials.py` and `flows/sweep.py` wrap this.
"""
from mnist_etc.sweep.orchestrator import SweepOptions, SweepSummary, run_sweep
from mnist_etc.sweep.runner import LocalRunner, TrialRunner
from mnist_etc.sweep.trial import TrialOutcome, TrialSpec, run_trial

__all__ = ["LocalRunner", "SweepOptions", "SweepSummary", "TrialOutcome", "TrialRunner", "TrialSpec", "run_sweep",
           "run_trial"]
