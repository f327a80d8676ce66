"""Verbs `train`, `attack` and `demo`: the library's training and hill-climbing attack from the shell."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc_cli.options import add_settings_options

MODELS_DIR = Path("artifacts/models")
ATTACKS_DIR = Path("artifacts/attacks")
DATA_FLAGS = {"seed": "--split-seed"}   # --seed is the training seed
DEMO_ATTACK = {"victims": 25}          # the demo's comparison: more victims than a single attack's default
DEMO_NOISE = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an autoencoder and a linear classifier on its code, optionally "
                                     "with DP-SGD", description=(
        "Train the convolutional autoencoder, then a linear classifier on its frozen code. A noise "
        "multiplier above 0 trains that stage with DP-SGD (Poisson sampling, per-example clipping, noise "
        "from a secret source); epsilon is accounted with dp_accounting (PLD, RDP beside). Writes weights, "
        "model.json and per-epoch example images to artifacts/models/<name>/."))
    train_opts = add_settings_options(p, TrainConfig, title="training")
    p.add_argument("--noise-multiplier", type=float, metavar="FLOAT",
                   help="DP-SGD noise multiplier of both stages (a per-stage option overrides it)")
    data_opts = add_settings_options(p, DataConfig, flags=DATA_FLAGS, title="data")
    p.add_argument("--out", type=Path, help="model directory (default artifacts/models/<name from config>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train, settings={"train": train_opts, "data": data_opts})

    a = sub.add_parser("attack", help="reconstruct test images from a trained model's scores by Bayesian "
                                      "hill climbing", description=(
        "Bayesian hill climbing (Galbally et al. 2010) from the classifier's scores alone. 'public-prior' "
        "(default) is an outsider with its own autoencoder fitted on public digits; 'own-decoder' is an "
        "insider with the target's decoder. Victims are training members and held-out non-members. The "
        "headline is the excess cosine over the label-only baseline (the public class-mean image of the "
        "predicted class) with a bootstrap 95% interval; writes attack.json and grid.png."))
    a.add_argument("--model", type=Path, required=True, help="a model directory written by 'mnist-etc train'")
    attack_opts = add_settings_options(a, AttackConfig, title="attack")
    a.add_argument("--out", type=Path, help="output directory (default artifacts/attacks/<model name>)")
    a.add_argument("--show-training-data", action="store_true",
                   help="show training members in grid.png (titled so); default: held-out non-members only")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_attack, settings={"attack": attack_opts})

    d = sub.add_parser("demo", help="train a plain and a private model, attack both, print a comparison",
                       description="Train a non-private model and a DP-SGD model on the embedded digits, "
                                   "attack both with the same settings and print a comparison table.")
    demo_attack = add_settings_options(d, AttackConfig, fields=("victims", "n_iter"), base=DEMO_ATTACK, title="attack")
    d.add_argument("--noise-multiplier", type=float, default=DEMO_NOISE,
                   help="noise multiplier of the private model's two stages (default %(default)s)")
    d.set_defaults(func=cmd_demo, settings={"attack": demo_attack})


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {}
    if args.noise_multiplier is not None:
        for stage in ("ae_noise_multiplier", "clf_noise_multiplier"):
            overrides[stage] = args.noise_multiplier   # a per-stage option given beside it wins
    return args.settings["train"].build(args, flags=dict.fromkeys(overrides, "--noise-multiplier"), **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = train_config_from_args(args)
    data_cfg = args.settings["data"].build(args)
    from mnist_etc.data import load_split
    from mnist_etc.model_store import default_model_name, train_and_save

    split = load_split(data_cfg)
    out = args.out or MODELS_DIR / default_model_name(cfg)
    result, out = train_and_save(cfg, split, out, progress=not args.quiet)
    print_model_summary(out, result.metrics, result.privacy.statement())
    return 0


def print_model_summary(out: Path, metrics: dict[str, float], statement: str) -> None:
    print(f"model: {out}")
    print(f"test accuracy {metrics['test_accuracy']:.4f} (val {metrics['val_accuracy']:.4f}); "
          f"reconstruction MSE {metrics['test_reconstruction_mse']:.4f}")
    print(f"privacy: {statement}")


def cmd_attack(args: argparse.Namespace) -> int:
    cfg = args.settings["attack"].build(args)
    from mnist_etc.data import load_split
    from mnist_etc.model_store import load_model
    from mnist_etc.audit.attacks.report import headline_lines, save_attack
    from mnist_etc.audit.attacks.runner import attack_model, check_attack_inputs
    from mnist_etc.audit.leakage import LEAKAGE_METRICS

    stored = load_model(args.model)
    split = load_split(stored.data_config)
    check_attack_inputs(split, cfg)
    result = attack_model(stored.networks, split, cfg, progress=not args.quiet)
    out = save_attack(result, args.out or ATTACKS_DIR / stored.path.name / cfg.attack, stored.path,
                      show_training_data=args.show_training_data)
    print(f"attack {result.attack}: {result.threat_model}")
    print(format_table(["score", "attack", "label-only baseline"],
                       [[k, f"{result.summary[k]:.4f}", f"{result.baseline[k]:.4f}"] for k in LEAKAGE_METRICS]))
    print("\n".join(headline_lines(result.summary)))
    print(f"{len(result.victims.labels)} victims, {result.queries} queries, {result.seconds:.1f} s "
          f"({result.victims_per_second:.3f} victims/s); wrote {out}/attack.json and {out}/grid.png")
    return 0


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def cmd_demo(args: argparse.Namespace) -> int:
    attack_cfg = args.settings["attack"].build(args)   # checked before TensorFlow loads
    plain = TrainConfig()
    private = TrainConfig(ae_noise_multiplier=args.noise_multiplier, clf_noise_multiplier=args.noise_multiplier)

    from mnist_etc.data import load_split
    from mnist_etc.model_store import default_model_name, train_and_save
    from mnist_etc.audit.attacks.report import save_attack
    from mnist_etc.audit.attacks.runner import attack_model

    split = load_split(DataConfig())
    rows = []
    for label, cfg in (("plain", plain), ("DP-SGD", private)):
        print(f"== {label} model: {cfg}")
        result, path = train_and_save(cfg, split, MODELS_DIR / default_model_name(cfg))
        att = attack_model(result.networks, split, attack_cfg)
        save_attack(att, ATTACKS_DIR / path.name / attack_cfg.attack, path)
        eps = result.privacy.epsilon
        s = att.summary
        rows.append([label, f"{result.metrics['test_accuracy']:.4f}", "inf" if math.isinf(eps) else f"{eps:.2f}",
                     f"{s['excess_cosine']:+.4f} [{s['excess_cosine_low']:+.3f}, {s['excess_cosine_high']:+.3f}]",
                     f"{s['member_gap']:+.4f}", f"{s['direct_cosine']:.4f}", f"{s['label_baseline_cosine']:.4f}",
                     f"{s['identification_rate']:.2f}", str(path)])
    print()
    print(format_table(["model", "test acc", "epsilon", "excess leakage [95%]", "member gap", "cosine",
                        "label-only cos", "identified", "artifacts"], rows))
    print("\nexcess leakage = cosine of the public-prior attack's reconstruction to the victim minus that of the "
          "public class-mean image of the predicted class (what the label alone gives away); member gap = "
          "members minus non-members.\nReconstruction grids: artifacts/attacks/<model>/public-prior/grid.png")
    return 0
