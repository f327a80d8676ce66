"""Verbs `pipeline` (the main job: sweep, export, serve, benchmark, audit) and `audit` (the privacy audit)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from mnist_etc_cli.options import flag_named


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


# Flag -> where it lives in the audit policy (`AuditConfig`, the one home of defaults, bounds and help).
POLICY_FLAGS = {"victims": "attack.victims", "n-iter": "attack.n_iter", "max-epsilon": "max_epsilon",
                "leakage-bound": "leakage_bound", "membership-auc-bound": "membership_auc_bound",
                "growth-margin": "growth_margin", "canaries": "canary.canaries",
                "canary-confidence": "canary.confidence"}
PREFIXED = ("victims", "n-iter")   # the pipeline names these --audit-victims, --audit-n-iter


def _policy_field(path: str) -> tuple[Any, Any]:
    """The pydantic field at `path` of the audit policy and its default value."""
    from mnist_etc.privacy.audit_policy import AuditConfig

    model, value = AuditConfig, AuditConfig()
    for part in path.split("."):
        field, value = model.model_fields[part], getattr(value, part)
        model = field.annotation
    return field, value


def _flag(name: str, prefix: str) -> str:
    return f"--{prefix}{name}" if name in PREFIXED else f"--{name}"


def add_policy_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The audit policy's options: help, type and default read from `AuditConfig`."""
    g = parser.add_argument_group("audit policy (mnist_etc.privacy.audit_policy.AuditConfig)")
    for name, path in POLICY_FLAGS.items():
        field, default = _policy_field(path)
        g.add_argument(_flag(name, prefix), dest=f"policy:{path}", type=field.annotation, default=argparse.SUPPRESS,
                       metavar=field.annotation.__name__.upper(),
                       help=f"{field.description} (default {default})".replace("%", "%%"))
    g.add_argument("--allow-non-private", dest="policy:allow_non_private", action="store_true",
                   default=argparse.SUPPRESS, help=_policy_field("allow_non_private")[0].description.replace("%", "%%"))
    g.add_argument("--canary-audit", choices=["auto", "on", "off"], default="auto",
                   help="the one-run canary audit (one more training run of the champion's configuration): 'auto' "
                        "runs it when the champion is DP (default %(default)s)")


def policy_from_args(args: argparse.Namespace, prefix: str = "") -> Any:
    """The audit policy from the options given over its defaults; a bad value is one sentence naming the flag."""
    from mnist_etc.errors import UserError
    from mnist_etc.privacy.audit_policy import AuditConfig

    nested: dict[str, Any] = {"canary_audit": {"auto": None, "on": True, "off": False}[args.canary_audit]}
    for key, value in vars(args).items():
        if key.startswith("policy:"):
            *parents, leaf = key.removeprefix("policy:").split(".")
            node = nested
            for parent in parents:
                node = node.setdefault(parent, getattr(AuditConfig(), parent).to_dict())
            node[leaf] = value
    try:
        return AuditConfig.parse(nested)
    except UserError as exc:
        flags = {path: _flag(name, prefix) for name, path in POLICY_FLAGS.items()}
        raise UserError(flag_named(str(exc), flags)) from None


def check_champion(champion: str | None, served_model: str, url: str | None = None) -> None:
    """What the audit flow would find wrong only after Prefect started: checked first."""
    from mnist_etc.errors import UserError
    from mnist_etc.triton.repository import DEFAULT_REPOSITORY, read_model_config, validate_model_name

    validate_model_name(served_model)
    if champion is not None and not champion.startswith(("models:/", "runs:/")):
        raise UserError(f"--champion {champion!r} is not accepted; give an MLflow model URI such as "
                        f"models:/mnist-etc-smoke@champion or runs:/<run id>/<path>.")
    if url is None and (DEFAULT_REPOSITORY / served_model).is_dir():
        read_model_config(DEFAULT_REPOSITORY, served_model)   # what the embedded server loads: corrupt or not


def cmd_pipeline(args: argparse.Namespace) -> int:
    # Everything a user can get wrong is checked here, before Prefect, a server or a training run starts.
    from mnist_etc.benchmark import resolve_spec
    from mnist_etc.sweep.space import load_search_space
    from mnist_etc.names import validate_name

    policy = policy_from_args(args, prefix="audit-")
    space = load_search_space(args.space).with_overrides(trials=args.trials, parallelism=args.parallelism)
    grid = resolve_spec(args.grid)
    if args.run is not None:
        validate_name(args.run, "--run")

    from flows.audit import AuditFailed
    from flows.pipeline import pipeline

    try:
        pipeline(space=space, grid=grid, run=args.run, audit=policy)   # validated above, passed as is
    except AuditFailed as exc:
        print(f"mnist-etc pipeline: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    policy = policy_from_args(args)   # before Prefect or a server starts
    check_champion(args.champion, args.served_model, args.url)

    from flows.audit import AuditFailed, privacy_audit

    try:
        privacy_audit(champion=args.champion, triton_url=args.url, served_model=args.served_model, policy=policy)
    except AuditFailed as exc:
        print(f"mnist-etc audit: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0
