"""The progress artifact of a flow run (tasks/progress.py) on a real Prefect server (the session's harness).

`progress_of_flow_run` is what the flow tests of tests/test_benchmark.py and tests/test_sweep.py read: the
run's progress artifact as the API returns it, and every value it was updated to. An update replaces the
artifact's data in place (no new version), so its history is read from the server's event log, where
Prefect's client records each update as an event `prefect.artifact.updated` with the new data.
"""
from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import pytest


def progress_updates(artifact_id: UUID, at_least: int, timeout: float = 60) -> list[float]:
    """The values the artifact was updated to, oldest first. Events reach the server in batches (every few
    seconds): waits until `at_least` updates, one of them to 100, are in, or `timeout` passes."""
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            events = client.request("POST", "/events/filter", json={"filter": {
                "event": {"name": ["prefect.artifact.updated"]},
                "resource": {"id": [f"prefect.artifact.{artifact_id}"]}, "order": "ASC"}, "limit": 50}).json()
            values = [e["payload"]["data"] for e in events["events"]]
            if (len(values) >= at_least and 100 in values) or time.monotonic() > deadline:
                return values
            time.sleep(0.5)


def progress_of_flow_run(flow_run_id: UUID, at_least: int) -> tuple[Any, list[float]]:
    """The flow run's one progress artifact, read through the API, and the values it was updated to."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["progress"])))
    return artifact, progress_updates(artifact.id, at_least)


@pytest.mark.slow
def test_the_bar_never_goes_back_and_a_failed_update_is_a_warning_not_a_failure(prefect_harness):
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.progress import RunProgress

    warnings: list[str] = []

    def shown() -> float:
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_latest_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["progress-probe"])))
            return float(artifact.data)

    @flow
    def watched() -> list[float]:
        progress = RunProgress("progress-probe", "Probe: percent of four units.", warn=warnings.append)
        seen = [shown()]
        progress.update(2, 4, "two of four")
        seen.append(shown())
        progress.update(2, 5, "the estimate grew")   # 40 %: the bar pauses at 50 rather than going back
        seen.append(shown())
        progress.update(3, None, "total not told")    # the bar stays
        seen.append(shown())
        with get_client(sync_client=True) as client:   # every update from now on gets a 404
            client.delete_artifact(progress.artifact_id)
        progress.update(3, 4, "three of four")
        progress.finish("done")
        return seen

    assert watched() == [0, 50, 50, 50]   # the flow completed: a failed update raised nothing
    assert len(warnings) == 2, warnings
    assert "'progress-probe' could not be updated" in warnings[0] and "the run goes on without it" in warnings[0]
    assert warnings[1].startswith("2 updates of progress artifact 'progress-probe' failed")
