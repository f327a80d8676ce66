"""Verbs `audit` (the privacy audit of the served champion, the flow privacy-audit) and `audit-dp` (the one-run
canary audit of a trained model), and the audit policy's options, which `pipeline` shares."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_etc_cli.options import OptionSet, add_model_source_options, add_settings_options

AUDITS_DP_DIR = Path("artifacts/audits-dp")
# The audit policy's settings a user sets from the command line (the rest: a policy YAML or flow parameters).
POLICY_FIELDS = ("attack.victims", "attack.n_iter", "max_epsilon", "allow_non_private", "leakage_bound",
                 "membership_auc_bound", "growth_margin", "inconclusive", "canary_audit", "canary.canaries",
                 "canary.confidence")


def add_policy_options(parser: argparse.ArgumentParser, prefix: str = "") -> OptionSet:
    """The audit policy's options, from `AuditConfig`; `prefix` names the attack's (`--audit-victims` in the
    pipeline, whose own sweep has victims too)."""
    from mnist_etc.audit.config import AuditConfig

    flags = {"attack.victims": f"--{prefix}victims", "attack.n_iter": f"--{prefix}n-iter",
             "canary.confidence": "--canary-confidence"}
    return add_settings_options(parser, AuditConfig, fields=POLICY_FIELDS, flags=flags, key="policy",
                                title="audit policy (mnist_etc.audit.config.AuditConfig)")


def register(sub: argparse._SubParsersAction) -> None:
    from mnist_etc.triton.repository import DEFAULT_MODEL_NAME

    a = sub.add_parser("audit", help="privacy audit of the served champion (the flow privacy-audit)",
                       description=(
        "Run the Prefect flow `privacy-audit`: the public-prior reconstruction attack through the served Triton "
        "model on training members and held-out non-members, the in-process and own-decoder attacks for the "
        "record, confidence-threshold membership inference with its statistics and epsilon lower bound, the "
        "reconstruction bound, the epsilon statement, a comparison with the previous audit, and (for a DP "
        "champion) the one-run canary audit. Each test says PASS only when its 95%% interval lies wholly on the "
        "safe side of its bound (excess leakage at or below --leakage-bound, membership AUC at or below "
        "--membership-auc-bound, growth within --growth-margin, the members' identification rate within the "
        "reconstruction bound, membership and canary epsilon_lb consistent with the accounted epsilon), FAIL when "
        "wholly on the unsafe side, INCONCLUSIVE otherwise; epsilon must be finite (unless --allow-non-private) "
        "and at most --max-epsilon. The audit is PASSED only when every test that applies passes (an "
        "intersection-union test: no multiplicity correction needed). Exits 1 when it is FAILED, or INCONCLUSIVE "
        "under --inconclusive fail (the default). Report under artifacts/audits/<UTC time>/. The champion is "
        "resolved in MLflow before anything starts."))
    a.add_argument("--champion", metavar="URI",
                   help="MLflow model URI (default: models:/<newest sweep's registered model>@champion)")
    a.add_argument("--url", help="gRPC HOST:PORT of a running Triton (default: start the embedded one)")
    a.add_argument("--served-model", default=DEFAULT_MODEL_NAME, help="served model name (default %(default)s)")
    a.add_argument("--show-training-data", action="store_true",
                   help="show training members in the report's grid (titled so); default: held-out non-members only")
    a.set_defaults(func=cmd_audit, settings={"policy": add_policy_options(a)})

    from mnist_etc.audit.canary.config import CanaryAuditConfig

    d = sub.add_parser("audit-dp", help="one-run canary audit: a lower bound on epsilon beside the accounted one",
                       description=(
        "Train the model's configuration once more (same stages, epochs, batch size, Poisson sampling, "
        "microbatches, clipping and noise) with --canaries white-box gradient canaries on coordinates of their own, "
        "each in the training set with probability 1/2, scored from every step; the guesses are planned on a "
        "simulation of the accounted mechanism first. Prints epsilon_lb (the f-DP one-run bound, Mahloujifar et al. "
        "2025; Steinke, Nasr and Jagielski's beside it) against the model's accounted epsilon, and what a correct "
        "implementation reaches with these canaries; writes artifacts/audits-dp/<UTC time>/. Exits 1 when the "
        "observation contradicts the accounting (epsilon_lb above the accounted epsilon, or the accounted "
        "trade-off curve rejected): that is an accounting or DP-SGD bug. Needs no server."))
    add_model_source_options(d, "model")
    canary = add_settings_options(d, CanaryAuditConfig, title="canary audit")
    d.add_argument("--out-dir", type=Path, default=AUDITS_DP_DIR, help="where the report goes (default %(default)s)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_audit_dp, settings={"canary": canary})


def check_audit_target(champion: str | None, served_model: str, url: str | None = None) -> None:
    """What the audit flow would find wrong only after Prefect started: checked first."""
    from mnist_etc.triton.repository import DEFAULT_REPOSITORY, read_model_config, validate_model_name

    validate_model_name(served_model)
    from mnist_etc.export_source import check_champion

    check_champion(champion)
    if url is None and (DEFAULT_REPOSITORY / served_model).is_dir():
        read_model_config(DEFAULT_REPOSITORY, served_model)   # what the embedded server loads: corrupt or not


def cmd_audit(args: argparse.Namespace) -> int:
    policy = args.settings["policy"].build(args)   # before Prefect or a server starts
    check_audit_target(args.champion, args.served_model, args.url)

    from flows.audit import AuditFailed, privacy_audit

    try:
        privacy_audit(champion=args.champion, triton_url=args.url, served_model=args.served_model, policy=policy,
                      show_training_data=args.show_training_data)
    except AuditFailed as exc:
        print(f"mnist-etc audit: {exc}", file=sys.stderr)   # starts with FAILED or INCONCLUSIVE
        return 1
    return 0


def cmd_audit_dp(args: argparse.Namespace) -> int:
    cfg = args.settings["canary"].build(args)   # checked before anything is loaded or trained
    from mnist_etc.export_source import check_source

    check_source(args.model, args.winner, args.mlflow_model, args.mlflow_tracking_uri)
    from mnist_etc.audit.canary import describe, run_canary_audit
    from mnist_etc.audit.canary.report import save_canary_audit
    from mnist_etc.audit.run import audit_dir_name
    from mnist_etc.data import load_split
    from mnist_etc.export_source import resolve_source
    from mnist_etc.model_store import load_model

    source = resolve_source(args.model, args.winner, args.mlflow_model, args.mlflow_tracking_uri)
    stored = load_model(source.model_dir)
    print(f"model: {source.model_dir}; accounted epsilon of the model {stored.record['privacy'].get('epsilon')}")
    rec = run_canary_audit(stored.config, load_split(stored.data_config), cfg, progress=not args.no_progress)
    rec["model_path"], rec["model_epsilon"] = str(stored.path), stored.record["privacy"].get("epsilon")
    out = save_canary_audit(rec, args.out_dir / audit_dir_name())
    frac = rec["fraction_of_accounted"]
    print(f"epsilon_lb {rec['epsilon_lb']:.3f}   accounted epsilon {rec['accounted_epsilon']:.3f}"
          + (f"   epsilon_lb / accounted {frac:.2f}" if frac is not None else "")
          + (f"   a correct implementation reaches {rec['expected_epsilon_lb']:.3f}"
             if rec["expected_epsilon_lb"] is not None else "")
          + f"   canaries {rec['canaries']}   {rec['seconds']:.0f} s")
    print(describe(rec))
    print(f"report: {out}/report.md")
    return 0 if rec["consistent"] else 1
