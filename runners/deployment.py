"""The TrialRunner of `--runner deployment`: one Optuna trial = one flow run of deployment `trial/default` on work
pool `mnist-etc-trials`, picked up by any worker on any machine; the trial's files come back through MLflow.

    check_deployment_runner(mlflow_uri)                  # before anything starts: one sentence per missing piece
    runner = DeploymentTrialRunner()
    future = runner.submit(spec)                          # run_deployment(..., timeout=0, as_subflow=True)
    outcome = future.result()                             # downloaded into spec.trial_dir, paths rewritten
    runner.close()                                        # cancels the flow runs still in flight

One watcher thread polls every in-flight flow run (`POLL_SECONDS`) and resolves its future:
- COMPLETED: the trial's files are downloaded from its MLflow run (mnist_etc.sweep.transport) and the outcome read;
- FAILED: the trial failed (told FAIL); a worker's code-version refusal (state named `Refused`) is a UserError that
  stops the sweep; CANCELLED: failed too;
- CRASHED, or RUNNING with no `prefect.flow-run.heartbeat` event for `LOST_AFTER_SECONDS` (its worker was killed),
  or PENDING for `PENDING_SECONDS` (the worker died while starting it): the flow run is set CRASHED and the future
  raises `TrialLost` (the orchestrator fails the trial as stale and retries it); if that flow run was only cut off
  and finishes later, it ends Failed, named `Superseded` (`given_up_by_sweep`, in flows/trial.py), not COMPLETED;
- SCHEDULED or PENDING for `NO_WORKER_SECONDS` while the pool has no ONLINE worker: UserError naming the pool and
  the command that starts a worker.
The timings are module constants so tests can shorten them. The trial flow sends a heartbeat every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (30 in prefect.yaml, Prefect's minimum; its default is 180).
"""
from __future__ import annotations

import contextvars
import datetime as dt
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from uuid import UUID

from mnist_etc.atomic import jsonable
from mnist_etc.errors import UserError
from mnist_etc.sweep import transport
from mnist_etc.sweep.runner import TrialLost
from mnist_etc.sweep.trial import TrialOutcome, TrialSpec

DEPLOYMENT = "trial/default"
REFUSED_STATE = "Refused"          # the name of the Failed state a worker of another code version answers with
SUPERSEDED_STATE = "Superseded"    # ... a trial that finished after the sweep had set it CRASHED (lost) answers with
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
PREFECT_HEARTBEAT_DEFAULT = 180    # seconds, Prefect's own default for flow-run heartbeats

POLL_SECONDS = 1.0                 # between two looks at the in-flight flow runs (2 API requests each)
LOST_AFTER_SECONDS = 90.0          # RUNNING without a heartbeat this long: its worker is gone (at least 2 beats)
PENDING_SECONDS = 180.0            # PENDING this long: the worker that took it died before the flow started
NO_WORKER_SECONDS = 60.0           # waiting this long with no ONLINE worker in the pool: say so and stop
API_PATIENCE_SECONDS = 120.0       # the Prefect API not answering the watcher this long: stop the sweep
HEALTH_TIMEOUT_SECONDS = 5.0
EVENTS_PAGE = 50                   # the most events the Prefect API returns per request

Log = Callable[[str], None]


class TrialFailed(RuntimeError):
    """The trial's flow run ended FAILED or CANCELLED: the trial is told FAIL."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- before the start

def _answers(url: str) -> str | None:
    """None if GET `url` answers 200, else why not (a short phrase)."""
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS) as r:
            return None if r.status == 200 else f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", None) or exc)[:120]


def _basic(credentials: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def _prefect_auth_header() -> dict[str, str]:
    from prefect.settings import get_current_settings

    auth = get_current_settings().api.auth_string
    secret = auth.get_secret_value() if hasattr(auth, "get_secret_value") else auth
    return _basic(secret) if secret else {}


def _mlflow_auth_header() -> dict[str, str]:
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return _basic(f"{user}:{password}") if user and password else {}


def _check_credentials(url: str, headers: dict[str, str], server: str, names: str, expected: str) -> None:
    """A server that authenticates (a stack off loopback) and refuses this client's credentials is one sentence
    naming the server and the settings to fix; the credentials themselves are never shown."""
    request = urllib.request.Request(url, headers=headers)
    try:
        urllib.request.urlopen(request, timeout=HEALTH_TIMEOUT_SECONDS).close()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise UserError(f"{server} refused this client's credentials (HTTP {exc.code}, {'wrong' if headers else 'missing'} "
                            f"{names}); set {names} to {expected}, from the stack's secrets.env or "
                            f"worker-secrets.env.") from None
    except (OSError, ValueError):
        pass   # not an answer about credentials: the health checks above report an unreachable server


def check_deployment_runner(mlflow_uri: str | None, deployment: str = DEPLOYMENT) -> Any:
    """Everything `--runner deployment` needs, checked before any flow run starts: a Prefect API that answers, an
    http(s):// MLflow tracking server that answers, and the trial deployment. Returns the deployment; each
    missing piece is one UserError sentence."""
    from prefect.settings import get_current_settings

    api_url = get_current_settings().api.url
    if not api_url:
        raise UserError("--runner deployment needs a Prefect server but PREFECT_API_URL is not set; start one "
                        "(deployments/local_stack.py up) and export PREFECT_API_URL=http://HOST:PORT/api.")
    why = _answers(f"{api_url.rstrip('/')}/health")
    if why:
        raise UserError(f"--runner deployment needs the Prefect API at PREFECT_API_URL={api_url}, which does not "
                        f"answer ({why}); start the server or fix PREFECT_API_URL.")
    _check_credentials(f"{api_url.rstrip('/')}/admin/version", _prefect_auth_header(), f"the Prefect API at {api_url}",
                       "PREFECT_API_AUTH_STRING", "the server's PREFECT_SERVER_API_AUTH_STRING")
    if not (mlflow_uri or "").startswith(("http://", "https://")):
        raise UserError(f"--runner deployment needs an http(s):// MLflow tracking server (trials on other machines "
                        f"send their files through it), got {mlflow_uri!r}; pass --mlflow-uri http://HOST:PORT of "
                        f"an 'mlflow server --serve-artifacts'.")
    why = _answers(f"{mlflow_uri.rstrip('/')}/health")
    if why:
        raise UserError(f"--runner deployment needs the MLflow tracking server at {mlflow_uri}, which does not "
                        f"answer ({why}); start it or pass another --mlflow-uri.")
    _check_credentials(f"{mlflow_uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1",
                       _mlflow_auth_header(), f"the MLflow tracking server at {mlflow_uri}",
                       "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD", "a user of its basic-auth app")
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise UserError(f"deployment {deployment!r} is not on the Prefect server at {api_url}; deploy it from "
                            f"the repository: prefect --no-prompt deploy --all (or deployments/local_stack.py up)."
                            ) from None


# -------------------------------------------------------------------------------------------------- runner

@dataclass
class _InFlight:
    spec: TrialSpec
    future: Future
    flow_run_id: UUID
    name: str
    parent_task_run_id: UUID | None
    submitted: float = field(default_factory=time.monotonic)   # monotonic, like every time below
    pending_since: float | None = None
    running_since: float | None = None
    last_beat: dt.datetime | None = None      # the newest heartbeat event seen (its own timestamp)
    alive_at: float | None = None             # when this watcher last saw a sign of life (RUNNING, a new beat)
    finishing: bool = False


def given_up_by_sweep(flow_run_id: Any, log: Log | None = None) -> str | None:
    """In a trial's flow run, at its end: a sentence when this flow run was set CRASHED meanwhile (by the sweep, after
    `LOST_AFTER_SECONDS` without a heartbeat, see `_lose`, or by the server's zombie automation, which the sweep
    reads as lost), so the sweep told Optuna FAIL and runs the trial again; None when it was not, or when the API
    cannot tell (the trial then ends as it would have)."""
    if flow_run_id is None:
        return None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except Exception as exc:  # the API unreachable: nothing is known, the final state report will tell
        if log:
            log(f"could not read this flow run's state before ending ({type(exc).__name__}: {exc})")
        return None
    if state is None or state.type != StateType.CRASHED:
        return None
    return f"finished after the sweep had given it up as lost: {_message(state)} Its result is not counted."


class DeploymentTrialRunner:
    """`submit(spec)` starts a flow run of `deployment` (a subflow of the current flow run, if any) and returns a
    future that the watcher thread resolves; see the module docstring for what each flow-run state becomes."""

    needs_tracking_run = True   # the trial's files come back through its MLflow run (mnist_etc.sweep.runner)

    def __init__(self, deployment: str = DEPLOYMENT, log: Log | None = None, deployment_info: Any = None):
        from prefect.client.orchestration import get_client

        self.deployment_name = deployment
        self.log = log or _stderr
        if deployment_info is None:
            with get_client(sync_client=True) as client:
                deployment_info = client.read_deployment_by_name(deployment)
        self.work_pool = deployment_info.work_pool_name or "?"
        env = (deployment_info.job_variables or {}).get("env") or {}
        beat = int(env.get(HEARTBEAT_ENV) or os.environ.get(HEARTBEAT_ENV) or PREFECT_HEARTBEAT_DEFAULT)
        self.lost_after = max(LOST_AFTER_SECONDS, 2.0 * beat)   # two beats missed, whatever the frequency
        self.code_version = transport.code_version()
        self._runs: dict[UUID, _InFlight] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._finisher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trial-download")
        self._closed = False

    @classmethod
    def checked(cls, mlflow_uri: str | None, deployment: str = DEPLOYMENT, log: Log | None = None
                ) -> "DeploymentTrialRunner":
        """`check_deployment_runner`, then a runner for the deployment it found."""
        info = check_deployment_runner(mlflow_uri, deployment)
        return cls(deployment, log=log, deployment_info=info)

    # --------------------------------------------------------------------------------------- the interface

    def submit(self, spec: TrialSpec) -> "Future[TrialOutcome]":
        from prefect.deployments import run_deployment

        if self._closed:
            raise RuntimeError("this DeploymentTrialRunner is closed")
        future: Future = Future()
        name = f"{spec.study}-trial-{spec.number}"
        try:
            flow_run = run_deployment(
                self.deployment_name, timeout=0, as_subflow=True, flow_run_name=name,
                parameters={"spec": jsonable(spec.to_dict()), "code_version": self.code_version},
                # A submit retried after an API hiccup must not start the same trial twice.
                idempotency_key=f"mnist-etc:{spec.study}:{spec.number}:{spec.mlflow_run_id}")
        except Exception as exc:  # the API went away after the pre-start check: the sweep cannot go on
            from prefect.settings import get_current_settings

            future.set_exception(UserError(
                f"could not start trial {spec.number} as a flow run of {self.deployment_name} on the Prefect API "
                f"at {get_current_settings().api.url} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})."))
            return future
        with self._lock:
            self._runs[flow_run.id] = _InFlight(spec, future, flow_run.id, name, flow_run.parent_task_run_id)
        self.log(f"trial #{spec.number}: flow run {name} ({flow_run.id}) on work pool {self.work_pool}")
        self._ensure_watcher()
        return future

    def close(self) -> None:
        """Stop watching; cancel the flow runs still in flight (their futures are cancelled)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
        with self._lock:
            left = [r for r in self._runs.values() if not r.future.done()]
            self._runs.clear()
        if left:
            self._cancel_runs(left)
        for run in left:
            run.future.cancel()
        self._finisher.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------------------------------ the watcher

    def _ensure_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            # The caller's context (its Prefect settings: the API URL) goes along; a new thread starts without it.
            context = contextvars.copy_context()
            self._watcher = threading.Thread(target=context.run, args=(self._watch,), name="trial-flow-runs",
                                             daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        from prefect.client.orchestration import get_client

        unanswered_since: float | None = None
        failures = 0
        # httpx_settings={}: a client of this thread's own, not the flow run's (that one belongs to its thread).
        with get_client(httpx_settings={}, sync_client=True) as client:
            while not self._stop.is_set():
                try:
                    self._poll(client)
                    if unanswered_since is not None:
                        self.log(f"trial watcher: the Prefect API answers again after "
                                 f"{time.monotonic() - unanswered_since:.0f} s ({failures} failed request(s))")
                    unanswered_since, failures = None, 0
                except Exception as exc:  # the API is restarting or gone: keep trying for a while
                    failures += 1
                    now = time.monotonic()
                    unanswered_since = unanswered_since or now
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    if now - unanswered_since > API_PATIENCE_SECONDS:
                        self._fail_all(UserError(
                            f"the Prefect API failed the trial watcher's requests for {now - unanswered_since:.0f} s "
                            f"while trials were in flight ({reason}); check the server and rerun the sweep to "
                            f"resume."))
                        unanswered_since, failures = None, 0
                    elif failures == 1 or failures % 10 == 0:   # not once a second while the API is down
                        self.log(f"trial watcher: a Prefect API request failed ({reason}); retrying every "
                                 f"{POLL_SECONDS:g} s for up to {API_PATIENCE_SECONDS:.0f} s ({failures} so far)")
                self._stop.wait(POLL_SECONDS)

    def _watched(self) -> list[_InFlight]:
        with self._lock:
            return [r for r in self._runs.values() if not r.finishing and not r.future.done()]

    def _fail_all(self, exc: BaseException) -> None:
        for run in self._watched():
            self._resolve(run, exc)

    def _poll(self, client: Any) -> None:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.objects import StateType

        runs = self._watched()
        if not runs:
            return
        read = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.flow_run_id
                                                                                          for r in runs])),
                                     limit=len(runs))
        states = {fr.id: fr.state for fr in read}
        now = time.monotonic()
        running, waiting = [], []
        for run in runs:
            state = states.get(run.flow_run_id)
            if state is None:
                self._resolve(run, TrialLost(f"flow run {run.name} ({run.flow_run_id}) vanished from the Prefect "
                                             f"server; the trial is run again."))
                continue
            kind = state.type
            if kind == StateType.COMPLETED:
                self._finish(client, run, state)
            elif kind == StateType.FAILED:
                if state.name == REFUSED_STATE:
                    self._resolve(run, UserError(state.message or "a worker refused the trial (code version)."))
                else:
                    self._resolve(run, TrialFailed(f"flow run {run.name} failed: {_message(state)}"))
                self._mark_parent(client, run, state)
            elif kind == StateType.CANCELLED:
                self._resolve(run, TrialFailed(f"flow run {run.name} was cancelled: {_message(state)}"))
                self._mark_parent(client, run, state)
            elif kind == StateType.CRASHED:
                self._resolve(run, TrialLost(f"flow run {run.name} crashed ({_message(state)}); the trial is run "
                                             f"again."))
                self._mark_parent(client, run, state)
            elif kind == StateType.RUNNING:
                if run.running_since is None:
                    run.running_since = run.alive_at = now
                running.append(run)
            elif kind == StateType.PENDING:
                run.pending_since = run.pending_since or now
                if now - run.pending_since > PENDING_SECONDS:
                    self._lose(client, run, f"has been PENDING for {now - run.pending_since:.0f} s (the worker that "
                                            f"took it stopped before the flow started)")
                else:
                    waiting.append(run)
            elif kind == StateType.SCHEDULED:
                waiting.append(run)
        if running:
            self._check_heartbeats(client, running, now)
        late = [r for r in waiting if now - r.submitted > NO_WORKER_SECONDS]
        if late and not self._worker_online(client):
            for run in late:
                self._cancel_runs([run], client)
                self._resolve(run, UserError(
                    f"work pool {self.work_pool} has no worker online (flow run {run.name} waited "
                    f"{now - run.submitted:.0f} s); start one with: MNIST_ETC_WORKER_DIR=DIR "
                    f"PREFECT_API_URL={client.api_url} prefect worker start --pool {self.work_pool} --type process"))

    def _check_heartbeats(self, client: Any, running: list[_InFlight], now: float) -> None:
        from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

        wall = dt.datetime.now(dt.timezone.utc)
        newest: dict[str, dt.datetime] = {}
        for i in range(0, len(running), EVENTS_PAGE):
            # distinct: the server returns the newest heartbeat of each flow run (one row per resource).
            page = client.read_events(EventFilter(
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{r.flow_run_id}"
                                                 for r in running[i:i + EVENTS_PAGE]], distinct=True),
                # `until` a day ahead: a worker whose clock runs ahead of this machine's still counts.
                occurred=EventOccurredFilter(since=wall - dt.timedelta(hours=6), until=wall + dt.timedelta(days=1))),
                limit=EVENTS_PAGE)
            for event in page.events:
                rid = event.resource.id
                if rid not in newest or event.occurred > newest[rid]:
                    newest[rid] = event.occurred
        for run in running:
            beat = newest.get(f"prefect.flow-run.{run.flow_run_id}")
            # Local time of the newest sign of life: no clock comparison across machines.
            if beat is not None and (run.last_beat is None or beat > run.last_beat):
                run.last_beat, run.alive_at = beat, now
            silent = now - (run.alive_at or now)
            if silent > self.lost_after:
                self._lose(client, run, f"sent no heartbeat for {silent:.0f} s (its worker was killed or lost "
                                        f"its connection)")

    def _worker_online(self, client: Any) -> bool:
        from prefect.client.schemas.objects import WorkerStatus

        try:
            workers = client.read_workers_for_work_pool(self.work_pool)
        except Exception as exc:  # ObjectNotFound: the pool itself is gone
            if type(exc).__name__ == "ObjectNotFound":
                return False
            raise
        return any(w.status == WorkerStatus.ONLINE for w in workers)

    # ------------------------------------------------------------------------------------------- outcomes

    def _resolve(self, run: _InFlight, result: Any) -> None:
        with self._lock:
            self._runs.pop(run.flow_run_id, None)
        try:
            if isinstance(result, BaseException):
                run.future.set_exception(result)
            else:
                run.future.set_result(result)
        except InvalidStateError:   # cancelled by close() meanwhile
            pass

    def _lose(self, client: Any, run: _InFlight, why: str) -> None:
        from prefect.states import Crashed

        message = f"flow run {run.name} {why}; set CRASHED by the sweep, the trial is run again."
        result = client.set_flow_run_state(run.flow_run_id, Crashed(message=message))
        if getattr(result.status, "value", result.status) not in ("ACCEPT",):
            return   # it reached a final state meanwhile (completed?): the next poll reads it
        self.log(f"trial #{run.spec.number}: {message}")
        self._mark_parent(client, run, Crashed(message=message))
        self._resolve(run, TrialLost(message))

    def _finish(self, client: Any, run: _InFlight, state: Any) -> None:
        """COMPLETED: download the trial's files off the watcher thread (it keeps watching the others)."""
        run.finishing = True
        self._mark_parent(client, run, state)
        spec = run.spec

        def download() -> None:
            try:
                outcome = transport.download_trial(spec.mlflow_tracking_uri, spec.mlflow_run_id,
                                                   Path(spec.trial_dir), log=self.log)
            except Exception as exc:  # MLflow down for minutes, or nothing uploaded: not the trial's fault
                self._resolve(run, TrialLost(f"flow run {run.name} completed but its files could not be "
                                             f"downloaded from MLflow run {spec.mlflow_run_id}: {exc}"))
                return
            self._resolve(run, outcome)

        try:
            self._finisher.submit(download)
        except RuntimeError:   # closed meanwhile
            self._resolve(run, TrialLost(f"flow run {run.name} completed while the sweep was stopping"))

    def _mark_parent(self, client: Any, run: _InFlight, state: Any) -> None:
        """The task run that stands for the trial in the sweep's flow run ends as its flow run did (Prefect leaves
        it PENDING)."""
        if run.parent_task_run_id is None:
            return
        from prefect.states import State

        try:
            client.set_task_run_state(run.parent_task_run_id, State(type=state.type, name=state.name,
                                                                    message=state.message), force=True)
        except Exception as exc:  # cosmetic: the trial's own flow run has the real state
            self.log(f"trial #{run.spec.number}: could not update its task run in the sweep ({exc})")

    def _cancel_runs(self, runs: list[_InFlight], client: Any = None) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType
        from prefect.states import Cancelled, Cancelling

        def cancel(c: Any) -> None:
            for run in runs:
                try:
                    current = c.read_flow_run(run.flow_run_id).state
                    if current is None or current.is_final():
                        continue
                    # Nothing started yet: cancelled at once; started: the worker stops it on CANCELLING.
                    state = Cancelled if current.type == StateType.SCHEDULED else Cancelling
                    c.set_flow_run_state(run.flow_run_id, state(message="the sweep stopped"), force=True)
                    self._mark_parent(c, run, Cancelled(message="the sweep stopped"))
                except Exception as exc:  # best effort: the sweep is ending anyway
                    self.log(f"could not cancel flow run {run.name}: {exc}")

        if client is not None:
            cancel(client)
        else:
            with get_client(sync_client=True) as c:
                cancel(c)


def _message(state: Any) -> str:
    return (state.message or state.name or str(state.type)).strip()
