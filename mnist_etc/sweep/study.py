"""The Optuna side of a sweep: create or resume the study, build the sampler, tell results, and settle
trials that a stopped sweep left RUNNING.

Optuna's heartbeat (which fails stale trials) only runs inside `study.optimize()`; an ask/tell
orchestrator has to do it itself. Here that happens when a sweep starts, under the study's sweep lock,
so no other live sweep of the study can own a RUNNING trial at that moment (`locks.study_lock`):
- a stale trial whose `trial-<n>/outcome.json` exists (on this disk, or for a trial that ran on a worker, in its
  MLflow run) had finished (the sweep died between publishing
  and telling): its results are told, nothing is lost;
- otherwise it is told FAIL with `stale: true` (not counted towards the trials asked for) and, if
  `stale_trial_retries` allows, its parameters are enqueued so the next ask re-runs them.
"""
from __future__ import annotations

import warnings
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

from mnist_etc.atomic import jsonable
from mnist_etc.errors import UserError
from mnist_etc.sweep.samplers import make_sampler as build_sampler
from mnist_etc.sweep.space import SearchSpace
from mnist_etc.sweep.trial import TrialOutcome, read_outcome, trial_dir

FINGERPRINT_ATTR = "mnist_etc_search_space"
RECOVERY_RETRY_SECONDS = 30.0   # how long settling a stopped sweep waits for MLflow to hand back a remote trial
Log = Callable[[str], None]


def make_sampler(space: SearchSpace, trials_so_far: int) -> Any:
    """The space's sampler, seeded afresh per start: its own seed plus the trials already made (a resumed sweep
    must not replay the first run's draws), or a secret seed when the space leaves it null."""
    import secrets

    seed = space.sampler.seed
    return build_sampler(space.sampler, space.grid(), secrets.randbits(32) if seed is None else seed + trials_so_far)


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(jsonable(value), sort_keys=True))


def open_study(space: SearchSpace, storage: Any, study_dir: Path, storage_label: str) -> tuple[Any, bool]:
    """Create the study, or load it and check it was made from the same search space."""
    import optuna

    exists = space.study in optuna.get_all_study_names(storage)
    if not exists and any(study_dir.glob("trial-*")):
        raise UserError(f"{study_dir} holds trials of an earlier study {space.study!r} that is not in "
                        f"{storage_label}; pass that --storage, another --study, or remove the directory.")
    study = optuna.create_study(study_name=space.study, storage=storage, directions=space.directions,
                                load_if_exists=True)
    if [d.name.lower() for d in study.directions] != space.directions:
        raise UserError(f"study {space.study!r} in {storage_label} optimises "
                        f"{[d.name.lower() for d in study.directions]}, not {space.directions}; pass another --study.")
    if study.metric_names is None:   # what the Optuna dashboard labels the objectives with
        with warnings.catch_warnings():   # "experimental since v3.2": the dashboard reads it all the same
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(space.objective_names)
    fingerprint = _canonical(space.fingerprint())
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
        study.set_user_attr("objectives", space.objective_names)
        return study, not exists
    if stored != fingerprint:
        differ = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise UserError(f"study {space.study!r} was created from a different search space ({', '.join(differ)} "
                        f"differ); resume it with its original YAML or pass a new --study.")
    return study, False


def is_counted(trial: Any) -> bool:
    """Trials that count towards `trials`: completed, or failed by their own error (not killed)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL
                                                  and not trial.user_attrs.get("stale", False))


def count_finished(study: Any) -> int:
    return sum(is_counted(t) for t in study.get_trials(deepcopy=False))


def attr_value(v: Any) -> Any:
    """User attributes go through JSON; the dashboard's browser JSON has no Infinity or NaN."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def record_outcome(study: Any, trial_id: int, number: int, outcome: TrialOutcome, artifact_store: Any) -> None:
    """Attributes and dashboard images on the RUNNING trial, then tell COMPLETE (the last write)."""
    from optuna.artifacts import upload_artifact
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    storage = study._storage  # the Trial object may be from an earlier process: write by id
    for key, value in outcome.user_attrs.items():
        storage.set_trial_user_attr(trial_id, key, attr_value(value))
    frozen = storage.get_trial(trial_id)
    uploaded = {json.loads(v).get("filename") for k, v in frozen.system_attrs.items()
                if k.startswith(ARTIFACTS_ATTR_PREFIX)}
    for image in outcome.images:
        if Path(image).is_file() and Path(image).name not in uploaded:
            upload_artifact(artifact_store=artifact_store, file_path=image, study_or_trial=frozen, storage=storage)
    study.tell(number, outcome.values)


def fail_trial(study: Any, trial_id: int, number: int, error: str, stale: bool = False) -> None:
    from optuna.trial import TrialState

    storage = study._storage
    storage.set_trial_user_attr(trial_id, "error", error[:2000])
    if stale:
        storage.set_trial_user_attr(trial_id, "stale", True)
    study.tell(number, state=TrialState.FAIL)


def _uploaded_outcome(tracking_uri: str, run_id: str, directory: Path, log: Log) -> TrialOutcome | None:
    """A trial that ran on a worker of another machine (`--runner deployment`) and finished after its sweep
    stopped: its files are in its MLflow run (mnist_etc.sweep.transport), not on this disk."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    from mnist_etc.sweep import transport

    try:
        return transport.fetch_outcome(tracking_uri, run_id, directory, retry_seconds=RECOVERY_RETRY_SECONDS, log=log)
    except Exception as exc:  # MLflow down: the trial is failed as stale and retried, nothing is counted twice
        log(f"could not look for trial files in MLflow run {run_id} ({str(exc).splitlines()[0][:200]}); "
            f"the trial is treated as unfinished.")
        return None


def settle_unfinished(study: Any, trials: list[Any], study_dir: Path, retries: int, artifact_store: Any,
                      tracker: Any, log: Log, why: str) -> dict[str, int]:
    """Tell RUNNING trials of a stopped sweep: recover finished ones, fail (and maybe retry) the rest."""
    from optuna.trial import TrialState

    counts = {"recovered": 0, "failed": 0, "retried": 0}
    for t in trials:
        current = study._storage.get_trial(t._trial_id)
        if current.state != TrialState.RUNNING:
            continue
        run_id = current.user_attrs.get("mlflow_run_id")
        outcome = read_outcome(trial_dir(study_dir, t.number))
        if outcome is None and tracker and run_id:
            outcome = _uploaded_outcome(tracker.tracking_uri, run_id, trial_dir(study_dir, t.number), log)
        if outcome is not None:
            outcome.recovered = True
            record_outcome(study, t._trial_id, t.number, outcome, artifact_store)
            if tracker and run_id:
                tracker.finish_trial_run(run_id, outcome, trial_dir(study_dir, t.number))
            counts["recovered"] += 1
            log(f"trial #{t.number}: had finished when the sweep {why}; recovered its results.")
            continue
        fail_trial(study, t._trial_id, t.number, f"stale: the sweep {why} before this trial finished", stale=True)
        if tracker and run_id:
            tracker.fail_trial_run(run_id, f"the sweep {why} before this trial finished", status="KILLED")
        counts["failed"] += 1
        done = int(current.user_attrs.get("retry_count", 0))
        if done < retries:
            study.enqueue_trial(dict(current.params), user_attrs={"retry_of": t.number, "retry_count": done + 1})
            counts["retried"] += 1
            log(f"trial #{t.number}: left unfinished when the sweep {why}; failed it and queued a retry "
                f"({done + 1} of {retries}).")
        else:
            log(f"trial #{t.number}: left unfinished when the sweep {why}; failed it (no retries left).")
    for partial in study_dir.glob(".trial-*.partial-*"):  # staging dirs of killed trials
        shutil.rmtree(partial, ignore_errors=True)
    return counts
