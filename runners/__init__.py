"""TrialRunners that need Prefect, next to each other; the interface (`TrialRunner`) and the in-process
`LocalRunner` are library code in `mnist_etc.sweep.runner`.

- `task_runner`: one Prefect task run per trial on the sweep flow run's thread or process pool;
- `deployment`: one flow run of deployment `trial/default` per trial on work pool `mnist-etc-trials`, served by
  workers on any machine, its files through MLflow (`--runner deployment`).
"""
