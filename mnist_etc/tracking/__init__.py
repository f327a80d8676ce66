"""MLflow, one home: every call the library makes to MLflow's tracking store and model registry is here.

    from mnist_etc.tracking import check_model_reference, check_tracking_uri

    check_tracking_uri("sqlite:///artifacts/mlflow.db")                      # a URI's form, nothing opened
    ref = check_model_reference("models:/mnist-etc-smoke@champion")         # resolved, nothing downloaded

Modules (each imports MLflow only inside its functions, so importing one stays light):
- `layout`: where things are: `default_tracking_uri`, the experiments (`SWEEP_EXPERIMENT`, `BENCHMARK_EXPERIMENT`,
  `AUDIT_EXPERIMENT`), `registered_model_name(study)`, `CHAMPION_ALIAS`, a champion's files in its run
  (`ONNX_ARTIFACT`, `KERAS_ARTIFACT`, `KERAS_SOURCE_TAG`), a trial's (`TRIAL_ARTIFACT_PATH`, `OUTCOME_FILE`),
  the study attribute naming a sweep's parent run (`PARENT_RUN_ATTR`). Plain names, no MLflow.
- `patience`: how long an HTTP tracking server is waited for (`patient_http`), whether it answered
  (`unreachable`) or refused the request (`refused`).
- `store`: accepted tracking URIs (`check_tracking_uri`), the SQLite file of one (`sqlite_file`), an experiment
  got, created or restored (`open_experiment`).
- `sweep`: `SweepTracker`, a sweep's parent run, trial runs and champion registration.
- `epochs`: `MlflowEpochLogger`, a trial's per-epoch metrics as it trains, and whether they went live.
- `trial_files`: `TrialFiles`, a trial's directory uploaded to its run and downloaded back (mnist_etc.sweep.transport
  retries these for a trial that ran on another machine).
- `benchmark`: `log_benchmark_run`, a run per benchmark.
- `export`: `save_onnx_flavour` (an exported ONNX file as an MLflow model) and `log_export_to_mlflow`.
- `audit`: `log_audit_run`, a run per privacy audit.
- `registry`: `models:/` and `runs:/` references: `resolve_model`, `download_model`, `check_model_reference`.

Nothing here imports the rest of the library above it (sweep, benchmark, export, training, privacy): callers
give plain data, or a callable where work of theirs is needed (the champion's ONNX model).
"""
from mnist_etc.lazy_exports import lazy_exports

_HOMES = {"default_tracking_uri": "layout", "registered_model_name": "layout", "CHAMPION_ALIAS": "layout",
          "patient_http": "patience", "check_tracking_uri": "store", "open_experiment": "store",
          "SweepTracker": "sweep", "MlflowEpochLogger": "epochs", "TrialFiles": "trial_files",
          "log_benchmark_run": "benchmark", "save_onnx_flavour": "export", "log_export_to_mlflow": "export",
          "log_audit_run": "audit", "ModelReference": "registry", "check_model_reference": "registry",
          "download_model": "registry", "resolve_model": "registry"}

__all__ = sorted(_HOMES)

__getattr__ = lazy_exports(__name__, _HOMES)
