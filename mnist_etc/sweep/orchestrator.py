"""The sweep: keep `parallelism` trials in flight through a TrialRunner (a slot is refilled as soon as its
trial finishes), tell each result as it comes, then choose the winner and write the reports. Only this loop
writes to the study storage.

    >>> space = load_search_space("search_spaces/smoke.yaml")
    >>> summary = run_sweep(space, SweepOptions.build(), LocalRunner(space.parallelism))
    >>> summary.winner["model_dir"]

`on_progress` (mnist_etc.progress) hears of each trial finished, out of the trials requested.

Outputs, under `artifacts/sweeps/<study>/`: `trial-<n>/` per trial, `pareto.png`, `trials.csv`,
`summary.md`, `winner.json`, `search_space.json`; dashboard images under `artifacts/optuna-artifacts/`.
"""
from __future__ import annotations

import datetime as dt
import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from mnist_etc.atomic import write_json_atomic, write_text_atomic
from mnist_etc.config import TrainConfig
from mnist_etc.errors import UserError, is_disk_full
from mnist_etc.sweep.space import SearchSpace
from mnist_etc.sweep import storage as storage_mod
from mnist_etc.sweep.reports import fmt_eps, pareto_plot, summary_markdown, ui_links, write_csv
from mnist_etc.sweep.locks import study_lock
from mnist_etc.sweep.runner import TrialLost, TrialRunner
from mnist_etc.dp.ledger import LEDGER_FILE, write_ledger
from mnist_etc.progress import ProgressHook, no_progress
from mnist_etc.sweep.search_privacy import (account_search_of, planned_search_epsilon, sweep_ledger,
                                             trial_count_distribution, uses_random_search)
from mnist_etc.sweep.study import (count_finished, fail_trial, make_sampler, open_study, record_outcome,
                                   settle_unfinished)
from mnist_etc.stop_request import check_stop
from mnist_etc.sweep.trial import TrialOutcome, TrialSpec, cached_split, trial_dir
from mnist_etc.sweep.winner import Choice, candidates, choose_winner
from mnist_etc.tracking.layout import CHAMPION_ALIAS, PARENT_RUN_ATTR, default_tracking_uri
from mnist_etc.tracking.store import check_tracking_uri
from mnist_etc.tracking.sweep import SweepTracker

Log = Callable[[str], None]


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep keeps things (the search space says what it explores)."""

    storage_url: str
    artifacts: Path
    mlflow_uri: str

    @classmethod
    def build(cls, storage: str | None = None, artifacts: str | Path = "artifacts",
              mlflow_uri: str | None = None) -> "SweepOptions":
        artifacts = Path(artifacts).resolve()
        url = storage or storage_mod.default_storage_url(artifacts)
        storage_mod.validate_storage_url(url)
        return cls(url, artifacts, check_tracking_uri(mlflow_uri) if mlflow_uri else default_tracking_uri(artifacts))

    def study_dir(self, study: str) -> Path:
        return self.artifacts / "sweeps" / study

    @property
    def optuna_artifacts(self) -> Path:
        return self.artifacts / "optuna-artifacts"

    @property
    def storage_label(self) -> str:
        return storage_mod.redact(self.storage_url)


@dataclass
class SweepSummary:
    study: str
    storage: str
    target_trials: int
    counts: dict[str, int]
    ran: int
    settled: dict[str, int]
    best_accuracy: float | None
    lowest_leakage: float | None
    winner: dict[str, Any] | None
    files: dict[str, str]
    wall_seconds: float
    search: dict[str, Any] = field(default_factory=dict)   # the search's privacy (SearchAccount.as_dict())
    trial_seconds: list[float] = field(default_factory=list)
    markdown: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def preflight(space: SearchSpace) -> None:
    """Checks that need the data (source readable, enough victims of both groups, public digits disjoint
    from training, enough training examples, a delta below 1/n)."""
    from mnist_etc.audit.attacks.runner import check_attack_inputs

    split = cached_split(space.data)
    try:
        check_attack_inputs(split, space.attack)
    except UserError as exc:
        raise UserError(f"{space.source}: attack: {exc}") from None
    searched = [v for name, p in space.params.items() if name == "batch_size" for v in p.extremes()]
    batch_sizes = searched or [space.fixed.get("batch_size", TrainConfig().batch_size)]
    deltas = [v for name, p in space.params.items() if name == "delta" for v in p.extremes()]
    delta = max(deltas or [space.fixed.get("delta", TrainConfig().delta)])
    if delta >= 1.0 / split.n_train:
        raise UserError(f"{space.source}: delta {delta:g} is not below 1/n = {1.0 / split.n_train:.3g} for the "
                        f"{split.n_train} training examples; lower it (default 1e-5).")
    if max(batch_sizes) > split.n_train:
        raise UserError(f"{space.source}: batch_size {max(batch_sizes)} exceeds the {split.n_train} training "
                        f"examples of the data; lower it or raise data.train_size.")
    planned = planned_search_epsilon(space, split.n_train)
    bound = space.winner.max_epsilon
    if bound is not None and planned.epsilon_search is not None and planned.epsilon_search > bound:
        raise UserError(f"{space.source}: the search would cost epsilon_search {fmt_eps(planned.epsilon_search)} "
                        f"({planned.method}, {planned.trial_count}), above winner.max_epsilon {bound:g}, so no "
                        f"champion could qualify; use sampler: random (its seed left out) for a private random "
                        f"search, fewer trials, more noise, or raise max_epsilon.")


def run_sweep(space: SearchSpace, options: SweepOptions, runner: TrialRunner, log: Log = print,
              on_progress: ProgressHook = no_progress) -> SweepSummary:
    """Validate, lock the study, settle a stopped sweep's trials, run the rest, report. Returns the summary.
    `on_progress` hears (trials finished, trials requested) at the start and as each trial finishes; the
    total is None in a private random search, whose trial count is secret."""
    t_start = time.perf_counter()
    preflight(space)
    study_dir = options.study_dir(space.study)
    with study_lock(study_dir, options.storage_url, space.study):
        storage = storage_mod.open_storage(options.storage_url)
        try:
            return _sweep(space, options, runner, log, storage, study_dir, t_start, on_progress)
        finally:
            storage.remove_session()
            storage.engine.dispose()  # a long-lived process (a flow server) must not keep pools open


def _sweep(space: SearchSpace, options: SweepOptions, runner: TrialRunner, log: Log, storage: Any, study_dir: Path,
           t_start: float, on_progress: ProgressHook = no_progress) -> SweepSummary:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.trial import TrialState

    study, created = open_study(space, storage, study_dir, options.storage_label)
    write_json_atomic(study_dir / "search_space.json",
                      {"storage": options.storage_label, "mlflow_tracking_uri": options.mlflow_uri,
                       "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "space": space.to_dict()})
    tracker = SweepTracker(options.mlflow_uri, options.artifacts)
    parent_run = _parent_run(study, space, options, tracker)
    options.optuna_artifacts.mkdir(parents=True, exist_ok=True)
    art_store = FileSystemArtifactStore(str(options.optuna_artifacts))

    drawn = drawn_trial_count(study, space)
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    settled = settle_unfinished(study, stale, study_dir, retries_of(space), art_store, tracker, log,
                                "stopped") if stale else {"recovered": 0, "failed": 0, "retried": 0}
    study.sampler = make_sampler(space, len(study.get_trials(deepcopy=False)))

    done = count_finished(study)
    verb = "created" if created else "resumed"
    if drawn is None:
        plan = f"{done} of {space.trials} trials finished; running {max(0, space.trials - done)} more"
    else:   # K stays in the sweep's own stores: the theorem's bound is for releasing the champion only
        plan = (f"a private random search of K trials, K drawn in secret ({space.trial_count}, mean {space.trials}); "
                f"{trials_started(study)} started so far")
    started = (f"study {space.study} {verb} in {options.storage_label}: {plan}, up to {space.parallelism} at a "
               f"time ({space.sampler.name} sampler). Trial artifacts: {study_dir}/trial-<n>/")
    log(started)
    on_progress(done, None if drawn is not None else space.trials, started)
    slots = _Slots(study, space, options, tracker, parent_run, art_store, study_dir, runner, log, drawn, on_progress)
    try:
        slots.run()
    finally:
        runner.close()

    summary = _finish(study, space, options, tracker, parent_run, art_store, t_start, slots.ran, settled, log, drawn)
    summary.trial_seconds = slots.trial_seconds
    return summary


def _parent_run(study: Any, space: SearchSpace, options: SweepOptions, tracker: SweepTracker) -> str:
    """The study's parent run in the tracking store (the one its user attribute names, else a new one), with the
    sweep's settings as its parameters."""
    fingerprint = space.fingerprint()
    params = {"sampler": space.sampler.name, "sampler_seed": space.sampler.seed,
              "objectives": f"max {space.accuracy_metric}, min {space.leakage_metric}",
              "winner_policy": space.winner.describe(space.leakage_metric)}
    params.update({f"fixed.{k}": v for k, v in space.fixed.items()})
    params.update({f"search.{name}": str(p.to_dict()) for name, p in space.params.items()})
    params.update({f"attack.{k}": v for k, v in fingerprint["attack"].items()})
    params.update({f"data.{k}": v for k, v in fingerprint["data"].items()})
    known = study.user_attrs.get(PARENT_RUN_ATTR)
    run_id = tracker.parent_run(space.study, options.storage_label, params, known)
    if run_id != known:
        study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


def _ask_one(study: Any, space: SearchSpace, options: SweepOptions, tracker: SweepTracker, parent_run: str,
             distributions: dict[str, Any], needs_run: bool = False) -> tuple[Any, TrialSpec] | None:
    """Ask Optuna for one trial and build its spec; None if its settings are invalid (the trial is told FAIL).
    `needs_run`: the runner sends the trial's files through its MLflow run (a worker on another machine), so
    the run must exist: while the MLflow server is down (restarting) it is retried, then the sweep stops."""
    trial = study.ask(distributions)
    try:
        train = space.train_config(trial.params)
    except UserError as exc:  # the corner check makes this unlikely; fail the trial, not the sweep
        fail_trial(study, trial._trial_id, trial.number, f"UserError: {exc}")
        return None
    run_id = tracker.start_trial_run(parent_run, space.study, trial.number, train.to_dict(), trial.params)
    if run_id is None and needs_run:
        run_id = _start_run_patiently(study, trial, space, tracker, parent_run, train.to_dict())
    trial.set_user_attr("mlflow_run_id", run_id)
    spec = TrialSpec(study=space.study, number=trial.number, params=dict(trial.params), train=train,
                     data=space.data, attack=space.attack,
                     trial_dir=str(trial_dir(options.study_dir(space.study), trial.number)),
                     objectives=(space.accuracy_metric, space.leakage_metric),
                     mlflow_tracking_uri=options.mlflow_uri, mlflow_run_id=run_id)
    return trial, spec


def _start_run_patiently(study: Any, trial: Any, space: SearchSpace, tracker: SweepTracker, parent_run: str,
                         train: dict[str, Any]) -> str:
    from mnist_etc.sweep.transport import RETRY_SECONDS, with_retries

    start = tracker.start_trial_run.__wrapped__   # without the skip-while-unreachable of the tracker's calls
    try:
        return with_retries(f"starting trial #{trial.number}'s MLflow run at {tracker.tracking_uri}",
                            lambda: start(tracker, parent_run, space.study, trial.number, train, trial.params),
                            retry_seconds=RETRY_SECONDS)
    except Exception as exc:
        fail_trial(study, trial._trial_id, trial.number, f"stale: no MLflow run ({exc})", stale=True)
        raise UserError(f"the MLflow server at {tracker.tracking_uri} did not answer for {RETRY_SECONDS:.0f} s "
                        f"and trials on workers send their files through it; start it and rerun the sweep "
                        f"(it resumes).") from None


DRAWN_ATTR = "mnist_etc.trial_count_drawn"   # K of a private random search, kept in the study only


def trials_started(study: Any) -> int:
    """Trials that started training (or were told a result): every trial but a re-run still waiting."""
    from optuna.trial import TrialState

    return sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def drawn_trial_count(study: Any, space: SearchSpace) -> int | None:
    """K of a private random search: drawn in secret on the study's first start and kept in the study (a resumed
    sweep goes on to the same K); None when the sweep runs `trials` finished trials as usual."""
    if not uses_random_search(space):
        return None
    drawn = study.user_attrs.get(DRAWN_ATTR)
    if drawn is None:
        earlier = len(study.get_trials(deepcopy=False))
        if earlier:   # trials chosen by another search: the K runs would not be independent draws
            raise UserError(f"study {space.study!r} already holds {earlier} trial(s) of a search that was not a "
                            f"private random search; a private random search starts a study of its own: pass "
                            f"--study with a new name (or set search_accounting: none).")
        import secrets

        import numpy as np

        drawn = int(trial_count_distribution(space).draw(np.random.default_rng(secrets.randbits(128))))
        study.set_user_attr(DRAWN_ATTR, drawn)
    return int(drawn)


def retries_of(space: SearchSpace) -> int:
    """Re-runs of a lost trial: none in a private random search, whose K runs must each draw afresh (a re-run of
    the same settings is not an independent draw); a lost trial counts as a run with no result."""
    return 0 if uses_random_search(space) else space.stale_trial_retries


class _Slots:
    """Refill, not batch: keep `parallelism` trials in flight and ask for the next one as soon as any
    finishes. Tells each result as it arrives; on an interrupt, settles what is still in flight."""

    def __init__(self, study: Any, space: SearchSpace, options: SweepOptions, tracker: SweepTracker,
                 parent_run: str, art_store: Any, study_dir: Path, runner: TrialRunner, log: Log,
                 drawn: int | None = None, on_progress: ProgressHook = no_progress):
        self.study, self.space, self.options, self.tracker = study, space, options, tracker
        self.on_progress = on_progress
        self.drawn = drawn   # a private random search runs exactly this many trials, failed ones included
        self.parent_run, self.art_store, self.study_dir, self.runner, self.log = (parent_run, art_store, study_dir,
                                                                                runner, log)
        self.distributions = space.distributions()
        self.in_flight: dict[Future, tuple[Any, TrialSpec]] = {}
        self.submitting: Any = None   # the trial being submitted (an Optuna Trial), until submit() returns
        self.ran, self.trial_seconds = 0, []
        self.stop_error: BaseException | None = None   # disk full or a runner's UserError: drain, then raise it

    def run(self) -> None:
        try:
            while True:
                check_stop()   # a stop whose exception some library swallowed mid-trial takes effect here
                if self.stop_error is None:
                    self._fill()
                if not self.in_flight:
                    break
                # A timeout, so a stop asked for while every slot is busy is seen within a second.
                done, _ = wait(list(self.in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
                check_stop()
                for future in sorted(done, key=lambda f: self.in_flight[f][0].number):
                    trial, spec = self.in_flight.pop(future)
                    self._settle(trial, spec, _result(future))
        except BaseException:
            # Ctrl-C or a cancelled flow: settle what we can now; the next start settles the rest.
            unfinished = [t for t, _ in self.in_flight.values()] + ([self.submitting] if self.submitting else [])
            self._settle_unfinished(unfinished, "was interrupted")
            raise
        if self.stop_error is not None:
            raise self.stop_error

    def _remaining(self) -> int:
        if self.drawn is not None:
            return self.drawn - trials_started(self.study)   # running ones are started
        return self.space.trials - count_finished(self.study) - len(self.in_flight)

    def _fill(self) -> None:
        while len(self.in_flight) < self.space.parallelism and self._remaining() > 0:
            asked = _ask_one(self.study, self.space, self.options, self.tracker, self.parent_run, self.distributions,
                             self.runner.needs_tracking_run)
            if asked is not None:
                self.submitting = asked[0]   # a one-slot runner runs the trial inside submit()
                self.in_flight[self.runner.submit(asked[1])] = asked
                self.submitting = None

    def _settle(self, trial: Any, spec: TrialSpec, result: Any) -> None:
        if is_disk_full(result) or isinstance(result, (UserError, TrialLost)):
            # Not the trial's fault: settled (and retried by a rerun), not told FAIL. Disk full and a runner's
            # UserError stop the sweep once the trials in flight are in; a lost trial is retried at once.
            why = ("ran out of disk space" if is_disk_full(result) else
                   "lost this trial's worker" if isinstance(result, TrialLost) else "stopped on an error")
            self._settle_unfinished([trial], why)
            if isinstance(result, TrialLost):
                self.log(f"trial #{trial.number}: {result}")
            elif self.stop_error is None:
                self.stop_error = result
            return
        self.ran += 1
        if isinstance(result, TrialOutcome) and not all(math.isfinite(v) for v in result.values):
            # Optuna would turn NaN values into FAIL on its own, with a warning nobody reads.
            result = ValueError(f"objective values {result.values} are not finite (did training diverge?); "
                                f"artifacts kept in {spec.trial_dir}")
        _tell(self.study, trial, spec, result, self.art_store, self.tracker)
        if isinstance(result, TrialOutcome):
            self.trial_seconds.append(float(result.user_attrs.get("trial_seconds", math.nan)))
        finished = count_finished(self.study)
        line = _progress_line(finished, self.space, trial.number, result, self.drawn is not None)
        self.log(line)
        self.on_progress(finished, None if self.drawn is not None else self.space.trials, line)

    def _settle_unfinished(self, trials: list[Any], why: str) -> None:
        settle_unfinished(self.study, trials, self.study_dir, retries_of(self.space), self.art_store,
                          self.tracker, self.log, why)


def _result(future: Future) -> Any:
    """The trial's outcome, or the exception it raised (a cancelled future counts as interrupted)."""
    if future.cancelled():
        return KeyboardInterrupt("the trial was cancelled before it started")
    return future.exception() or future.result()


def _tell(study: Any, trial: Any, spec: TrialSpec, result: Any, art_store: Any, tracker: SweepTracker) -> None:
    if isinstance(result, TrialOutcome):
        record_outcome(study, trial._trial_id, trial.number, result, art_store)
        tracker.finish_trial_run(spec.mlflow_run_id, result, Path(spec.trial_dir))
    else:
        error = f"{type(result).__name__}: {result}"
        fail_trial(study, trial._trial_id, trial.number, error)
        tracker.fail_trial_run(spec.mlflow_run_id, error)


def _progress_line(finished: int, space: SearchSpace, number: int, result: Any, secret_count: bool = False) -> str:
    head = f"trial {finished}{'' if secret_count else f'/{space.trials}'} (#{number})"
    if isinstance(result, TrialOutcome):
        acc, leak = result.values
        eps = result.user_attrs.get("epsilon")
        eps = fmt_eps(float(eps)) if eps is not None else "?"
        return (f"{head} COMPLETE: {space.accuracy_metric} {acc:.4f}, {space.leakage_metric} {leak:.4f}, "
                f"epsilon {eps}, {result.user_attrs.get('trial_seconds', 0):.1f} s")
    return f"{head} FAIL: {type(result).__name__}: {str(result).splitlines()[0][:300] if str(result) else ''}"


def _finish(study: Any, space: SearchSpace, options: SweepOptions, tracker: SweepTracker, parent_run: str,
            art_store: Any, t_start: float, ran: int, settled: dict[str, int], log: Log,
            drawn: int | None = None) -> SweepSummary:
    from optuna.trial import TrialState

    study_dir = options.study_dir(space.study)
    trials = study.get_trials(deepcopy=False)
    cands = candidates(trials)
    account = account_search_of(space, cached_split(space.data).n_train, trials_started(study), drawn)
    choice = choose_winner(cands, space.winner, space.leakage_metric, account.epsilon_search)
    files: dict[str, str] = {}
    files["trials_csv"] = str(write_csv(study_dir / "trials.csv", trials, space.objective_names))
    if cands:
        files["pareto_png"] = str(pareto_plot(study_dir / "pareto.png", cands, choice, space.study,
                                              space.accuracy_metric, space.leakage_metric, space.winner.max_leakage))
    winner = _write_winner(study_dir / "winner.json", choice, space, options, tracker, log, account)
    ledger_path = study_dir / LEDGER_FILE
    if winner is not None:
        files["winner_json"] = str(study_dir / "winner.json")
        reg = winner["mlflow"]
        model = (f"models:/{reg['registered_model']}/{reg['version']}" if reg.get("version")
                 else str(winner["model_dir"]))
        write_ledger(sweep_ledger(space, trials, account, choice.winner.number, cached_split(space.data).n_train,
                                  model), ledger_path)
        tracker.log_ledger(reg.get("run_id"), ledger_path)
        files["privacy_ledger"] = str(ledger_path)
    elif ledger_path.exists():
        ledger_path.unlink()   # no champion, no release to account
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    wall = time.perf_counter() - t_start
    mlflow_info = winner["mlflow"] if winner else None
    links = ui_links(study._study_id, tracker.experiment_id, parent_run,
                     mlflow_info.get("registered_model") if mlflow_info else None)
    md = summary_markdown(space.study, options.storage_label, counts, cands, choice, space.accuracy_metric,
                          space.leakage_metric, dict(files, summary_md=str(study_dir / "summary.md")), wall,
                          mlflow_info, links, account.as_dict())
    write_text_atomic(study_dir / "summary.md", md)
    files["summary_md"] = str(study_dir / "summary.md")
    best = max(cands, key=lambda c: c.accuracy) if cands else None
    low = min(cands, key=lambda c: c.leakage) if cands else None
    tracker.finish_parent(parent_run, {"completed_trials": counts.get("COMPLETE", 0),
                                       "failed_trials": counts.get("FAIL", 0),
                                       f"best_{space.accuracy_metric}": best.accuracy if best else math.nan,
                                       f"lowest_{space.leakage_metric}": low.leakage if low else math.nan,
                                       "epsilon_search": (account.epsilon_search if account.epsilon_search
                                                          is not None else math.nan)},
                          [Path(f) for f in files.values()])
    log(f"{choice.reason[0].upper()}{choice.reason[1:]}")
    log(f"search privacy: {account.statement}")
    if tracker.missing:
        log(f"MLflow tracking is incomplete: {len(tracker.missing)} call(s) failed (the store was down?); the "
            f"trials and their results are in the study and under {study_dir}; winner.json lists what is missing.")
    log(f"reports: {', '.join(files.values())}")
    return SweepSummary(space.study, options.storage_label, space.trials, counts, ran, settled,
                        best.accuracy if best else None, low.leakage if low else None, winner, files, wall,
                        search=account.as_dict(), markdown=md)


def _write_winner(path: Path, choice: Choice, space: SearchSpace, options: SweepOptions, tracker: SweepTracker,
                  log: Log, account: Any) -> dict[str, Any] | None:
    if choice.winner is None:
        if path.exists():
            path.unlink()  # a winner.json from an earlier run would contradict this run's policy
        return None
    w = choice.winner
    run_id = w.user_attrs.get("mlflow_run_id")
    registered, version = None, None
    try:
        write_onnx_model = _champion_writer(space.study, run_id, w.user_attrs["model_dir"])
        registered, version = tracker.register_champion(space.study, run_id, write_onnx_model, tags={
            "epsilon": fmt_eps(w.epsilon), "epsilon_search": _eps_tag(account.epsilon_search),
            "search_accounting": account.method, "delta": str(w.user_attrs.get("delta"))})
    except Exception as exc:  # the store is down, or the winner was tracked in another MLflow store earlier
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        tracker.missing.append(f"registration of the champion: {reason}")
        log(f"could not register trial {w.number} in the MLflow model registry ({reason}); winner.json is "
            f"written without it.")
    record = {
        "study": space.study,
        "trial": w.number,
        "values": {space.accuracy_metric: w.accuracy, space.leakage_metric: w.leakage},
        "params": w.params,
        "epsilon": w.epsilon,
        "epsilon_search": account.epsilon_search,   # null: not accounted (search_accounting: none)
        "delta": w.user_attrs.get("delta"),
        "search": account.as_dict(),
        "model_dir": w.user_attrs.get("model_dir"),
        "trial_dir": w.user_attrs.get("trial_dir"),
        "qualified": choice.qualified,
        "reason": choice.reason,
        "policy": space.winner.to_dict(),
        "storage": options.storage_label,
        "mlflow": {"tracking_uri": options.mlflow_uri, "run_id": run_id, "registered_model": registered,
                   "version": version, "alias": CHAMPION_ALIAS if version else None,
                   "missing": list(tracker.missing)},   # what the store did not take (it was down): [] = all
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(path, record)
    return record


def _eps_tag(eps: float | None) -> str:
    return "not accounted" if eps is None else fmt_eps(eps)


def _champion_writer(study: str, run_id: str, model_dir: str) -> Callable[[Path], Any]:
    """What the tracker registers as the champion: the winner's model exported to ONNX (parity checked) and
    written as an MLflow model (onnx flavour) into the directory it is given."""

    def write(path: Path) -> Any:
        from mnist_etc.export import save_mlflow_onnx_model
        from mnist_etc.model_store import load_model

        return save_mlflow_onnx_model(load_model(model_dir), path,
                                      source={"kind": "sweep", "study": study, "mlflow_run_id": run_id})

    return write
