"""optuna-dashboard served by gunicorn (a production WSGI server) on 127.0.0.1, with the trials' images.

    serve_dashboard("sqlite:///artifacts/optuna.db", Path("artifacts/optuna-artifacts"), port=8080)

optuna-dashboard's own `run_server` is the standard library's wsgiref: one request at a time. Here gunicorn
runs its WSGI app with threaded workers; the storage is opened in the worker (after the fork), so no
database connection crosses a fork. SQLite storage is in WAL mode: the dashboard's reads never block a
running sweep's writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def dashboard_app(storage_url: str, artifact_dir: Path) -> Any:
    """The optuna-dashboard WSGI application for a study storage and its artifact store."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    from mnist_etc.sweep.storage import open_storage

    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    return wsgi(open_storage(storage_url), artifact_store=FileSystemArtifactStore(str(artifact_dir)))


def serve_dashboard(storage_url: str, artifact_dir: Path, port: int, workers: int = 1, threads: int = 8) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM stop gunicorn's arbiter and its workers)."""
    from gunicorn.app.base import BaseApplication

    class Dashboard(BaseApplication):
        def load_config(self) -> None:
            for key, value in {"bind": f"127.0.0.1:{port}", "workers": workers, "threads": threads,
                               "worker_class": "gthread", "timeout": 120, "accesslog": None,
                               "errorlog": "-", "loglevel": "warning", "proc_name": "mnist-etc-dashboard"}.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return dashboard_app(storage_url, artifact_dir)

    Dashboard().run()
