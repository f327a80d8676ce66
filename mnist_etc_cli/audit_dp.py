"""Verb `audit-dp`: the one-run canary audit of a trained model (an empirical lower bound on its epsilon)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from mnist_etc.privacy.audit_policy import CanaryAuditConfig
    from mnist_etc_cli.options import add_model_source_options

    d = CanaryAuditConfig()
    p = sub.add_parser("audit-dp", help="one-run canary audit: a lower bound on epsilon beside the accounted one",
                       description=(
        "Train the model's configuration once more (same stages, epochs, batch size, Poisson sampling, "
        "microbatches, clipping and noise) with --canaries gradient canaries, each in the training set with "
        "probability 1/2; score them from the trained weights; turn the correct in/out guesses into epsilon_lb "
        "at --confidence with the bound of Steinke, Nasr and Jagielski (NeurIPS 2023). Prints epsilon_lb beside "
        "the accounted epsilon and writes artifacts/audits-dp/<UTC time>/. Exits 1 when epsilon_lb exceeds the "
        "accounted epsilon: that is an accounting or DP-SGD bug. Needs no server."))
    add_model_source_options(p, "model")
    g = p.add_argument_group("canary audit")
    g.add_argument("--canaries", type=int, default=d.canaries, help="number of canaries m (default %(default)s)")
    g.add_argument("--inclusion", type=float, default=d.inclusion,
                   help="probability that a canary is trained on (the bound needs 0.5; default %(default)s)")
    g.add_argument("--confidence", type=float, default=d.confidence,
                   help="confidence of the lower bound (default %(default)s)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the canaries' inclusion and weights "
                   "(default %(default)s)")
    p.add_argument("--out-dir", type=Path, default=Path("artifacts/audits-dp"),
                   help="where the report goes (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_audit_dp)


def cmd_audit_dp(args: argparse.Namespace) -> int:
    from mnist_etc.privacy.audit_policy import CanaryAuditConfig

    cfg = CanaryAuditConfig(canaries=args.canaries, inclusion=args.inclusion, confidence=args.confidence,
                            seed=args.seed)   # checked before anything is loaded or trained
    from mnist_etc.data import load_split
    from mnist_etc.export_source import resolve_source
    from mnist_etc.model_store import load_model
    from mnist_etc.privacy.audit import audit_dir_name
    from mnist_etc.privacy.canary import describe, run_canary_audit
    from mnist_etc.privacy.canary.report import save_canary_audit

    source = resolve_source(args.model, args.winner, args.mlflow_model, args.mlflow_tracking_uri)
    stored = load_model(source.model_dir)
    print(f"model: {source.model_dir}; accounted epsilon of the model {stored.record['privacy'].get('epsilon')}")
    rec = run_canary_audit(stored.config, load_split(stored.data_config), cfg, progress=not args.no_progress)
    rec["model_path"], rec["model_epsilon"] = str(stored.path), stored.record["privacy"].get("epsilon")
    out = save_canary_audit(rec, args.out_dir / audit_dir_name())
    print(f"epsilon_lb {rec['epsilon_lb']:.3f}   accounted epsilon {rec['accounted_epsilon']:.3f} (audit run; "
          f"model {float(stored.record['privacy']['epsilon']):.3f})   canaries {rec['canaries']}   "
          f"{rec['seconds']:.0f} s")
    print(describe(rec))
    print(f"report: {out}/report.md")
    return 0 if rec["consistent"] else 1
