"""Verbs `pipeline` (the main job: sweep, export, serve, benchmark, audit) and `audit` (the privacy audit)."""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="sweep -> export the champion -> serve on Triton -> benchmark -> "
                                        "privacy audit, with one summary", description=(
        "Run the Prefect flow `pipeline`: an Optuna sweep, export of its champion to ONNX and Triton, the "
        "test split served through an embedded Triton, a perf_analyzer benchmark of its batching and "
        "instance settings, and a privacy audit against the served model. Writes "
        "artifacts/pipeline/<run>/summary.md with the key plots. Without PREFECT_API_URL, Prefect runs a "
        "temporary local server for the run."))
    p.add_argument("--space", default="search_spaces/smoke.yaml", help="sweep search space (default %(default)s)")
    p.add_argument("--grid", default="search_spaces/benchmark_smoke.yaml",
                   help="benchmark grid (default %(default)s)")
    p.add_argument("--trials", type=int, help="override the number of sweep trials")
    p.add_argument("--parallelism", type=int, help="override the sweep's parallel trials")
    add_policy_options(p, prefix="audit-")
    p.add_argument("--run", help="run name (default: UTC timestamp); also names artifacts/pipeline/<run>")
    p.set_defaults(func=cmd_pipeline)

    a = sub.add_parser("audit", help="privacy audit of the served champion (the flow privacy-audit)",
                       description=(
        "Run the Prefect flow `privacy-audit`: the public-prior reconstruction attack through the served Triton "
        "model on training members and held-out non-members, the in-process and own-decoder attacks for the "
        "record, confidence-threshold membership inference with its statistics, the epsilon statement, and a comparison with the previous "
        "audit, and (for a DP champion) the one-run canary audit. Exits 1 when any test fails: epsilon infinite "
        "(unless --allow-non-private) or above --max-epsilon; the excess leakage's 95%% interval wholly above "
        "--leakage-bound; the membership AUC's interval wholly above --membership-auc-bound; the canary audit's "
        "epsilon_lb above the accounted epsilon; growth beyond --growth-margin. Report under "
        "artifacts/audits/<UTC time>/."))
    a.add_argument("--champion", help="MLflow model URI (default: models:/<newest sweep's model>@champion)")
    a.add_argument("--url", help="gRPC HOST:PORT of a running Triton (default: start the embedded one)")
    a.add_argument("--served-model", default="mnist_etc", help="served model name (default %(default)s)")
    add_policy_options(a)
    a.set_defaults(func=cmd_audit)


def add_policy_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The audit policy's options, defaults from `AuditConfig` (their one home)."""
    from mnist_etc.privacy.audit import AuditConfig

    d = AuditConfig()
    g = parser.add_argument_group("audit policy")
    g.add_argument(f"--{prefix}victims", type=int, default=d.attack.victims,
                   help="members and as many non-members attacked (at least 50; default %(default)s)")
    g.add_argument(f"--{prefix}n-iter", type=int, default=d.attack.n_iter,
                   help="hill-climbing iterations (default %(default)s)")
    g.add_argument("--max-epsilon", type=float, default=d.max_epsilon, help="fail above this epsilon (default %(default)s)")
    g.add_argument("--allow-non-private", action="store_true",
                   help="let a model with epsilon = inf pass the epsilon test (default: it fails)")
    g.add_argument("--leakage-bound", type=float, default=d.leakage_bound,
                   help="fail when the excess cosine's 95%% interval lies wholly above this (default %(default)s)")
    g.add_argument("--membership-auc-bound", type=float, default=d.membership_auc_bound,
                   help="fail when the membership AUC's 95%% interval lies wholly above this (default %(default)s)")
    g.add_argument("--growth-margin", type=float, default=d.growth_margin,
                   help="fail when the excess cosine grew more than this since the last audit (default %(default)s)")
    g.add_argument("--canary-audit", choices=["auto", "on", "off"], default="auto",
                   help="the one-run canary audit (one more training run of the champion's configuration): 'auto' "
                        "runs it when the champion is DP (default %(default)s)")
    g.add_argument("--canaries", type=int, default=d.canary.canaries,
                   help="canaries of that audit (default %(default)s)")
    g.add_argument("--canary-confidence", type=float, default=d.canary.confidence,
                   help="confidence of its epsilon lower bound (default %(default)s)")


def policy_kwargs(args: argparse.Namespace, prefix: str = "") -> dict:
    """The policy options as keyword arguments, checked (one sentence, exit 2) before any flow starts."""
    from flows.audit import audit_policy

    kw = dict(victims=getattr(args, f"{prefix}victims"), n_iter=getattr(args, f"{prefix}n_iter"),
              max_epsilon=args.max_epsilon, allow_non_private=args.allow_non_private,
              leakage_bound=args.leakage_bound, membership_auc_bound=args.membership_auc_bound,
              growth_margin=args.growth_margin,
              canary_audit={"auto": None, "on": True, "off": False}[args.canary_audit], canaries=args.canaries,
              canary_confidence=args.canary_confidence)
    audit_policy(**kw)
    return kw


def cmd_pipeline(args: argparse.Namespace) -> int:
    from flows.audit import AuditFailed
    from flows.pipeline import pipeline

    kw = policy_kwargs(args, prefix="audit_")
    try:
        pipeline(space=args.space, grid=args.grid, trials=args.trials, parallelism=args.parallelism, run=args.run,
                 audit_victims=kw.pop("victims"), audit_n_iter=kw.pop("n_iter"), **kw)
    except AuditFailed as exc:
        print(f"mnist-etc pipeline: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from flows.audit import AuditFailed, privacy_audit

    kw = policy_kwargs(args)
    try:
        privacy_audit(champion=args.champion, triton_url=args.url, served_model=args.served_model, **kw)
    except AuditFailed as exc:
        print(f"mnist-etc audit: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0
