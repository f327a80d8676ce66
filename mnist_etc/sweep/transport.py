"""A trial's files between machines that share no disk: the worker uploads `trial-<n>/` to the trial's MLflow
run (artifact path `trial/`, on an `http://` tracking server started with --serve-artifacts), the orchestrator
downloads it back into its own study directory and reads the outcome from there.

    # on the worker (flows/trial.py)
    outcome = run_trial_on_worker(spec, worker_dir() / "trial-runs" / flow_run_id)
    # on the orchestrator (runners/deployment.py)
    outcome = download_trial(spec.mlflow_tracking_uri, spec.mlflow_run_id, Path(spec.trial_dir))

The outcome's paths (trial_dir, model_dir, attack_dir, images) name the orchestrator's copy once downloaded, so
the reports, winner.json, the Optuna dashboard images and the champion registration work as for a local trial.
Both sides retry for `RETRY_SECONDS` with backoff (the MLflow server may restart mid-sweep), then give up; each
attempt's MLflow calls are mnist_etc.tracking.trial_files.
`code_version()` is what a worker compares with the sweep's before it runs a trial.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, TypeVar

from mnist_etc.atomic import jsonable, staged_dir, write_json_atomic
from mnist_etc.errors import UserError
from mnist_etc.sweep.trial import TrialOutcome, TrialSpec, read_outcome, run_trial
from mnist_etc.tracking.layout import OUTCOME_FILE, TRIAL_ARTIFACT_PATH
from mnist_etc.tracking.patience import patient_http, refused
from mnist_etc.tracking.trial_files import TrialFiles

RETRY_SECONDS = 120.0              # how long an upload or download keeps trying (an MLflow server restart)
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0)   # waits between attempts; the last one repeats
WORKER_DIR_ENV = "MNIST_ETC_WORKER_DIR"          # where a worker keeps a running trial (worker_dir())
STUDY_STORAGE_ENV = "MNIST_ETC_STUDY_STORAGE"    # the scaled stack's study, on its sweep worker (scaled_defaults())

Log = Callable[[str], None]
T = TypeVar("T")


class TrialFilesMissing(RuntimeError):
    """The trial's MLflow run holds no `trial/outcome.json`: the worker never uploaded a finished trial."""


# ------------------------------------------------------------------------------------------- versions

@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`<package version>+<hash>`: the hash covers every .py file of the installed `mnist_etc` package (path and
    bytes), so a worker whose trial code differs in any way reports another version, commit or not."""
    import mnist_etc

    root = Path(mnist_etc.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = metadata.version("mnist-etc")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"{version}+{digest.hexdigest()[:12]}"


def code_version_refusal(theirs: str, mine: str, where: str) -> str | None:
    """The one sentence a worker answers a trial of another code version with, or None when they match."""
    if theirs == mine:
        return None
    return (f"the worker {where} runs mnist_etc code version {mine} but the sweep sent trials of version {theirs}; "
            f"install the sweep's code on the worker (the same mnist_etc source) and restart it.")


def scaled_defaults(storage: str | None, mlflow_uri: str | None) -> tuple[str | None, str | None]:
    """--storage and --mlflow-uri of a `--runner deployment` sweep when not given: $MNIST_ETC_STUDY_STORAGE and
    $MLFLOW_TRACKING_URI, which the scaled stack sets on its sweep worker and in its env.sh."""
    return (storage or os.environ.get(STUDY_STORAGE_ENV) or None,
            mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or None)


def worker_dir() -> Path:
    """Where a worker keeps a trial while it runs: $MNIST_ETC_WORKER_DIR, else a folder in the system temp dir."""
    configured = os.environ.get(WORKER_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "mnist-etc-worker"


def trial_spec_from_dict(d: dict[str, Any]) -> TrialSpec:
    """The TrialSpec that `TrialSpec.to_dict()` described (as it arrives through a flow-run parameter)."""
    from mnist_etc.audit.attacks.config import AttackConfig
    from mnist_etc.config import DataConfig, TrainConfig

    if not isinstance(d, dict):
        raise UserError(f"a trial spec must be a mapping (TrialSpec.to_dict()), got {type(d).__name__}.")
    names = {f.name for f in dataclasses.fields(TrialSpec)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"trial spec: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}.")
    return TrialSpec(**{**d, "train": TrainConfig.parse(d.get("train"), "trial spec: train"),
                        "data": DataConfig.parse(d.get("data"), "trial spec: data"),
                        "attack": AttackConfig.parse(d.get("attack"), "trial spec: attack"),
                        "params": dict(d.get("params") or {}), "objectives": tuple(d.get("objectives") or ())})


# ---------------------------------------------------------------------------------------------- retries

def _patient_http() -> None:
    """The sweep's MLflow HTTP patience per attempt (mnist_etc.tracking.patience), so that one attempt does not
    spend the whole retry budget, and no progress bars in the logs."""
    patient_http()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _permanent(exc: BaseException) -> bool:
    """An answer that a retry will not change: MLflow said 4xx (no such run, bad path)."""
    return isinstance(exc, (TrialFilesMissing, UserError)) or refused(exc)


def with_retries(what: str, attempt: Callable[[], T], retry_seconds: float = RETRY_SECONDS,
                 log: Log | None = None) -> T:
    """`attempt()` until it succeeds or `retry_seconds` have passed (backoff between tries); the last error is
    raised as a RuntimeError naming `what`, how long it tried, and the cause."""
    deadline = time.monotonic() + retry_seconds
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except Exception as exc:  # connection refused/reset, 5xx, timeouts: the server may be restarting
            if _permanent(exc):
                raise
            wait = BACKOFF_SECONDS[min(tries - 1, len(BACKOFF_SECONDS) - 1)]
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            if time.monotonic() + wait > deadline:
                raise RuntimeError(f"{what} failed after {tries} attempt(s) over {retry_seconds:.0f} s: "
                                   f"{reason}") from exc
            (log or _stderr)(f"{what}: attempt {tries} failed ({reason}); retrying in {wait:.0f} s")
            time.sleep(wait)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------- transport

def upload_trial(directory: Path, tracking_uri: str, run_id: str, retry_seconds: float = RETRY_SECONDS,
                 log: Log | None = None) -> None:
    """Upload a published trial directory to run `run_id`'s artifacts under `trial/` (outcome.json last, so its
    presence there marks a complete upload, as on disk)."""
    directory = Path(directory)
    if not (directory / OUTCOME_FILE).is_file():
        raise TrialFilesMissing(f"{directory} holds no {OUTCOME_FILE}; only a finished trial is uploaded.")
    _patient_http()
    files = TrialFiles(tracking_uri)
    with_retries(f"upload of {directory} to MLflow run {run_id} at {tracking_uri}",
                 lambda: files.upload(run_id, directory), retry_seconds, log)


def download_trial(tracking_uri: str, run_id: str, directory: Path, retry_seconds: float = RETRY_SECONDS,
                   log: Log | None = None) -> TrialOutcome:
    """Download run `run_id`'s `trial/` into `directory` (published whole: mnist_etc.atomic.staged_dir) and return
    its outcome with every path naming this copy. Raises TrialFilesMissing if the run holds no finished trial."""
    directory = Path(directory).resolve()
    _patient_http()
    files = TrialFiles(tracking_uri)

    def attempt() -> TrialOutcome:
        if not files.uploaded(run_id):
            raise TrialFilesMissing(f"MLflow run {run_id} at {tracking_uri} holds no "
                                    f"{TRIAL_ARTIFACT_PATH}/{OUTCOME_FILE}; the trial's worker did not upload a "
                                    f"finished trial.")
        with staged_dir(directory) as tmp:
            fetched = files.download(run_id, tmp)
            for child in list(fetched.iterdir()):
                os.replace(child, tmp / child.name)
            fetched.rmdir()
            outcome = _localise(tmp, directory)
        return outcome

    return with_retries(f"download of MLflow run {run_id}'s trial files from {tracking_uri}", attempt,
                        retry_seconds, log)


def fetch_outcome(tracking_uri: str, run_id: str, directory: Path, retry_seconds: float = RETRY_SECONDS,
                  log: Log | None = None) -> TrialOutcome | None:
    """`download_trial`, or None when the run holds no finished trial (for recovering a trial whose worker
    finished after its sweep was killed)."""
    try:
        return download_trial(tracking_uri, run_id, directory, retry_seconds, log)
    except TrialFilesMissing:
        return None


def _localise(staged: Path, final: Path) -> TrialOutcome:
    """Rewrite the worker's paths in the staged copy's outcome.json (and config.json's trial_dir) to `final`."""
    raw = json.loads((staged / OUTCOME_FILE).read_text())
    worker = str(raw.get("user_attrs", {}).get("trial_dir") or "")

    def here(value: Any) -> Any:
        if worker and isinstance(value, str) and (value == worker or value.startswith(worker + "/")):
            return str(final) + value[len(worker):]
        return value

    raw["user_attrs"] = {k: here(v) for k, v in raw.get("user_attrs", {}).items()}
    raw["images"] = [here(p) for p in raw.get("images", [])]
    write_json_atomic(staged / OUTCOME_FILE, raw)
    config = staged / "config.json"
    if config.is_file():
        spec = json.loads(config.read_text())
        spec["trial_dir"] = str(final)
        write_json_atomic(config, spec)
    outcome = read_outcome(staged)
    if outcome is None:
        raise TrialFilesMissing(f"the {OUTCOME_FILE} downloaded from MLflow for {final} cannot be read.")
    return outcome


# ------------------------------------------------------------------------------------------------ worker

def run_trial_on_worker(spec: TrialSpec, work_dir: Path, retry_seconds: float = RETRY_SECONDS,
                        log: Log | None = None) -> TrialOutcome:
    """Run the trial in `work_dir` (not the orchestrator's trial_dir: no shared disk), upload it to the trial's
    MLflow run, delete the local copy. The returned outcome names the worker's (now deleted) paths."""
    if not (spec.mlflow_tracking_uri or "").startswith(("http://", "https://")) or not spec.mlflow_run_id:
        raise UserError(f"trial {spec.number} of study {spec.study} names no http(s):// MLflow tracking server "
                        f"and run (got {spec.mlflow_tracking_uri!r}, run {spec.mlflow_run_id!r}); a trial on a "
                        f"worker sends its files through one: pass --mlflow-uri http://HOST:PORT.")
    local = Path(work_dir).resolve() / Path(spec.trial_dir).name
    _patient_http()   # before training: the trial's per-epoch MLflow logging would wait minutes on a dead server
    try:
        outcome = run_trial(dataclasses.replace(spec, trial_dir=str(local)))
        upload_trial(local, spec.mlflow_tracking_uri, spec.mlflow_run_id, retry_seconds, log)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return outcome


def outcome_summary(outcome: TrialOutcome) -> dict[str, Any]:
    """What a trial flow run returns (small: the files and the full outcome travel through MLflow)."""
    return jsonable({"trial": outcome.number, "values": outcome.values, "artifact_path": TRIAL_ARTIFACT_PATH,
                     "trial_seconds": outcome.user_attrs.get("trial_seconds")})
