"""Verb `ledger`: the privacy ledger of a released model, every mechanism that touched its training digits."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ledger", help="the privacy ledger of a model: every mechanism that touched its training "
                                      "data, and what they compose to", description=(
        "Print the privacy ledger of a released model: each trial's training of its sweep, the selection that chose "
        "the champion (epsilon_search), every canary audit run on the same digits, and the statistics of members an "
        "audit published, each with its epsilon (or 'not private'), and the composed total for what was released. "
        "A sweep writes privacy_ledger.json beside its winner.json and on the champion's MLflow run; each audit "
        "appends its entries."))
    p.add_argument("model", metavar="MODEL",
                   help="models:/NAME@ALIAS (or /VERSION, runs:/ID/...), a sweep's study folder or winner.json, an "
                        "audit folder, or a privacy_ledger.json")
    p.add_argument("--mlflow-tracking-uri", metavar="URI",
                   help="tracking store of an MLflow reference (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///artifacts/mlflow.db)")
    p.add_argument("--json", action="store_true", help="print the ledger as JSON")
    p.set_defaults(func=cmd_ledger)


def cmd_ledger(args: argparse.Namespace) -> int:
    from mnist_etc.audit.ledger import model_ledger
    from mnist_etc.dp.ledger import render_ledger

    ledger = model_ledger(args.model, args.mlflow_tracking_uri)
    print(json.dumps(ledger.to_dict(), indent=1) if args.json else render_ledger(ledger))
    return 0
