"""How long the project waits for an MLflow tracking server over HTTP, and what an error says: the server did
not answer (try later) or refused the request (a retry will not help). The sweep's tracker
(mnist_etc.tracking.sweep) and a trial's file transport (mnist_etc.sweep.transport) both follow it."""
from __future__ import annotations

import os

HTTP_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def patient_http() -> None:
    """MLflow's own default waits minutes per call on a dead server (7 retries, backoff 2, 120 s timeout); a
    sweep (and a trial's upload, which retries on its own: mnist_etc.sweep.transport) would stall on every
    call. The user's settings win."""
    for name, value in HTTP_PATIENCE.items():
        os.environ.setdefault(name, value)


def unreachable(exc: BaseException) -> bool:
    """Whether an exception says the tracking server did not answer (refused, reset, timed out), as opposed to
    a request it answered with an error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return any(s in text for s in ("Max retries exceeded", "Connection refused", "Read timed out",
                                   "Connection aborted"))


def refused(exc: BaseException) -> bool:
    """Whether MLflow answered 4xx (no such run, bad path): an answer that a retry will not change."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        try:
            return 400 <= int(exc.get_http_status_code()) < 500
        except (TypeError, ValueError):
            return False
    return False
