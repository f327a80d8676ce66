"""A model's privacy ledger (`mnist_etc.dp.ledger`) where it is kept, and what an audit adds to it: its canary
run (a second training on the same digits; what it publishes depends on them only when microbatches clip canaries
together with real examples), and the statistics of members it publishes.

    ledger = model_ledger("models:/mnist-etc-smoke@champion")     # or a folder, a winner.json, a ledger file
    print(render_ledger(ledger))                                   # what `mnist-etc ledger MODEL` prints
"""
from __future__ import annotations

import math
from typing import Any

from mnist_etc.dp.ledger import Entry, Ledger


def canary_entry(canary: dict[str, Any], cfg: Any, orders: list[float]) -> Entry:
    """The canary audit's training: the model's configuration on the training split again. What it publishes is
    the canaries' scores and the bounds. With per-example clipping those are a function of the canaries and fresh
    randomness only (each canary on a coordinate no real example's gradient touches, `mnist_etc.audit.canary`):
    the run costs the training data nothing. With microbatches a canary is clipped together with real examples,
    so the scores are outputs of a second DP training on the same digits: its epsilon composes."""
    from mnist_etc.dp.accounting import training_events
    from mnist_etc.dp.private_selection import trial_rdp

    n = int(canary["accounted_n_train"])
    label = f"canary audit run ({canary['canaries']} canaries, {n} examples)"
    if canary.get("scores_depend_on_training_data") is False:
        return Entry(label, "canary audit", 0.0, 0.0, "none needed: the published scores do not depend on any "
                     "training example", rdp=[0.0 for _ in orders],
                     published="audit report: epsilon_lb, canary scores (functions of the canaries only)")
    curve = trial_rdp(training_events(cfg, n), orders)
    return Entry(label, "canary audit", float(canary["accounted_epsilon"]), cfg.delta, "PLD",
                 rdp=[float(v) for v in curve],
                 published="audit report: epsilon_lb, canary scores (outputs of this DP run)")


def statistics_entry(record: dict[str, Any]) -> Entry:
    """The audit's figures computed on training members without noise: the membership AUC and epsilon lower bound,
    the served attack's member - non-member gap and members' identification rate (the gates' figures), and the
    verdict that depends on them."""
    return Entry("the audit's membership AUC and epsilon_lb, member gap, members' identification rate and verdict",
                 "statistic of members",
                 math.inf, 0.0, "none: computed on training members without noise",
                 published="audit report, MLflow run privacy-audit, Prefect artifacts")


def append_audit(ledger: Ledger, record: dict[str, Any], cfg: Any) -> Ledger:
    if record.get("canary_audit") is not None:
        ledger.add(canary_entry(record["canary_audit"], cfg, ledger.orders))
    ledger.add(statistics_entry(record))
    return ledger


def model_ledger_without_sweep(model: str, stored: Any) -> Ledger:
    """A ledger for a model whose sweep wrote none (before the ledger existed): its own training, and a selection
    nobody accounted, which the conservative reading takes as not private."""
    from mnist_etc.dp.accounting import training_events
    from mnist_etc.dp.private_selection import trial_rdp

    cfg = stored.config
    ledger = Ledger.new(model, cfg.delta)
    n = int(stored.record.get("data", {}).get("n_train", 0)) or None
    curve = [float(v) for v in trial_rdp(training_events(cfg, n), ledger.orders)] if n else None
    ledger.add(Entry("training of the model", "training", stored.epsilon, cfg.delta, "PLD", rdp=curve,
                     published="the model"))
    ledger.add(Entry("selection of the model (its sweep wrote no ledger: not accounted)", "selection", math.inf,
                     cfg.delta, "none", published="unknown"))
    return ledger


def update_model_ledger(record: dict[str, Any], stored: Any, model: str, run_id: str | None,
                        tracking_uri: str | None, out_dir: Any) -> Any:
    """The audited model's ledger with this audit's entries: read from the model's MLflow run (where its sweep
    logged it), appended, written into the audit's folder and put back on the run. Returns the local path."""
    import tempfile
    from pathlib import Path

    from mnist_etc.dp.ledger import LEDGER_FILE, read_ledger, write_ledger
    from mnist_etc.tracking.registry import fetch_run_file, replace_run_file

    ledger = None
    if run_id is not None:
        with tempfile.TemporaryDirectory(prefix="mnist-etc-ledger-") as tmp:
            found = fetch_run_file(run_id, LEDGER_FILE, tracking_uri, Path(tmp))
            ledger = read_ledger(found) if found is not None else None
    if ledger is None:
        ledger = model_ledger_without_sweep(model, stored)
    path = write_ledger(append_audit(ledger, record, stored.config), Path(out_dir) / LEDGER_FILE)
    if run_id is not None:
        replace_run_file(run_id, path, tracking_uri)
    return path


def model_ledger(model: str, tracking_uri: str | None = None) -> Ledger:
    """The ledger of `model`: a privacy_ledger.json file, a folder holding one (a sweep's study folder, an audit's
    report folder), a sweep's winner.json (the ledger beside it), or an MLflow reference (`models:/NAME@ALIAS`,
    `models:/NAME/VERSION`, `runs:/ID/...`: the ledger on the model's run). One sentence when there is none."""
    import tempfile
    from pathlib import Path

    from mnist_etc.dp.ledger import LEDGER_FILE, read_ledger
    from mnist_etc.errors import UserError
    from mnist_etc.tracking.layout import tracking_uri_or_default
    from mnist_etc.tracking.registry import check_model_reference, fetch_run_file

    if model.startswith(("models:/", "runs:/")):
        tracking_uri = tracking_uri_or_default(tracking_uri)
        ref = check_model_reference(model, tracking_uri)
        with tempfile.TemporaryDirectory(prefix="mnist-etc-ledger-") as tmp:
            found = fetch_run_file(ref.run_id, LEDGER_FILE, tracking_uri, Path(tmp))
            if found is None:
                raise UserError(f"MLflow model {model!r} (run {ref.run_id}) has no {LEDGER_FILE}; its sweep predates "
                                f"the ledger: rerun the sweep, or audit it ('mnist-etc audit') to start one.")
            return read_ledger(found)
    path = Path(model)
    if path.is_dir():
        path = path / LEDGER_FILE
    elif path.name != LEDGER_FILE and path.suffix == ".json" and path.exists():
        path = path.parent / LEDGER_FILE   # a winner.json: the ledger beside it
    if not path.exists():
        raise UserError(f"no privacy ledger for {model!r} ({path} does not exist); give a sweep's study folder, its "
                        f"winner.json, an audit folder, a {LEDGER_FILE} or models:/NAME@ALIAS.")
    return read_ledger(path)
