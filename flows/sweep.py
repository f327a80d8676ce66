"""Prefect flow `sweep`: Optuna trials over a search space, one Prefect task per trial.

    python -m flows.sweep --help                  # or: mnist-etc sweep --space search_spaces/smoke.yaml
    from flows.sweep import sweep; sweep(space="search_spaces/smoke.yaml", trials=4, parallelism=2)

Parameters are those of `mnist-etc sweep`; `space` is a search-space file, or the search space itself (a
`mnist_etc.sweep.space.SearchSpace`, or in `--params` the same mapping as the YAML). The orchestration (ask/tell, stale trials, MLflow, winner,
reports) is library code, `mnist_etc.sweep.run_sweep`; this flow picks the task runner (threads by
default, or a process pool), runs it, and publishes the summary as a Prefect markdown artifact; while it
runs, a progress artifact (`sweep-<study>-progress`) counts the trials finished.
Without PREFECT_API_URL, Prefect starts a temporary local server for the run (10 to 15 s).

`task_runner="deployment"` runs each trial as a flow run of `trial/default` on work pool mnist-etc-trials
(runners/deployment.py, docs/scale-out.md); then `storage` and `mlflow_uri`, when not given, come from
$MNIST_ETC_STUDY_STORAGE and $MLFLOW_TRACKING_URI, which the scaled stack sets on its worker, so
`prefect deployment run 'sweep/scaled'` needs no parameters there.
"""
from __future__ import annotations

import csv
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from mnist_etc.artifact_keys import artifact_key
from mnist_etc.markdown_images import inline_images
from mnist_etc.sweep import SweepOptions, run_sweep
from mnist_etc.sweep.search_privacy import uses_random_search
from mnist_etc.sweep.space import SearchSpace, load_search_space
from mnist_etc.sweep.transport import scaled_defaults
from runners.deployment import DeploymentTrialRunner
from runners.task_runner import PrefectTrialRunner, make_task_runner
from tasks.progress import RunProgress


@contextmanager
def _workers_share_temporary_server(task_runner: str) -> Iterator[None]:
    """Process-pool workers of a run on Prefect's temporary server would each start their own server
    (they inherit no API URL), and their task runs would not show under this flow run. Point them at
    this process's temporary server for the pool's lifetime; a configured PREFECT_API_URL is left alone."""
    from prefect.settings import get_current_settings

    if task_runner != "processes" or get_current_settings().api.url:
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the singleton this process's client started
    if not server.running:
        yield
        return
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def _run_name() -> str:
    params = flow_run.parameters
    space = params.get("space", "space")
    if isinstance(space, (SearchSpace, dict)):
        named = space.study if isinstance(space, SearchSpace) else space.get("study", "space")
    else:
        named = str(space).rsplit("/", 1)[-1].split(".")[0]
    return f"sweep-{params.get('study') or named}"


@flow(name="sweep", flow_run_name=_run_name, log_prints=True,
      description="Optuna sweep over training settings, scored on test accuracy and attack leakage.")
def sweep(space: str | SearchSpace = "search_spaces/smoke.yaml", trials: int | None = None,
          parallelism: int | None = None, storage: str | None = None, study: str | None = None,
          mlflow_uri: str | None = None, task_runner: Literal["threads", "processes", "deployment"] = "threads",
          artifacts: str = "artifacts") -> dict[str, Any]:
    # A path is read here; a SearchSpace (from the CLI, or a mapping in --params) arrives validated.
    search = space if isinstance(space, SearchSpace) else load_search_space(space)
    search = search.with_overrides(study=study, trials=trials, parallelism=parallelism)
    if task_runner == "deployment":   # on the scaled stack's worker (deployments/local_stack.py sets both)
        storage, mlflow_uri = scaled_defaults(storage, mlflow_uri)
    options = SweepOptions.build(storage=storage, artifacts=artifacts, mlflow_uri=mlflow_uri)
    logger = get_run_logger()
    progress = RunProgress(artifact_key("sweep", search.study, "progress"), _progress_meaning(search))
    if task_runner == "deployment":   # one flow run per trial on work pool mnist-etc-trials, files via MLflow
        trials_runner = DeploymentTrialRunner.checked(options.mlflow_uri, log=logger.info)
        summary = run_sweep(search, options, trials_runner, log=logger.info, on_progress=progress.update)
    else:
        with _workers_share_temporary_server(task_runner), make_task_runner(task_runner, search.parallelism) as runner:
            summary = run_sweep(search, options, PrefectTrialRunner(runner), log=logger.info,
                                on_progress=progress.update)
    study_dir = Path(summary.files["summary_md"]).parent
    create_markdown_artifact(markdown=inline_images(summary.markdown, study_dir), key=artifact_key("sweep", search.study),
                             description=f"Sweep {search.study}: Pareto front, winner and report files.")
    with open(summary.files["trials_csv"], newline="") as f:
        create_table_artifact(table=list(csv.DictReader(f)), key=artifact_key("sweep", search.study, "trials"),
                              description=f"Sweep {search.study}: every trial (state, objectives, epsilon, params).")
    progress.finish(f"done: {summary.ran} trial(s) run by this sweep; reports in {study_dir}.")
    result = summary.to_dict()
    result.pop("markdown")
    return result


def _progress_meaning(search: SearchSpace) -> str:
    if uses_random_search(search):   # K is kept in the study only: a percent of it would tell it
        return (f"Sweep {search.study}: a private random search, whose trial count is secret: 0 until the sweep "
                f"ends, then 100.")
    return (f"Sweep {search.study}: percent of the {search.trials} requested trials finished (COMPLETE or FAIL; "
            f"those of an earlier run of the study count). 100 once the reports are written.")


if __name__ == "__main__":
    import sys

    from mnist_etc_cli.main import main

    sys.exit(main(["sweep", *sys.argv[1:]]))
