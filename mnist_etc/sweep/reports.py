"""Sweep reports: the Pareto plot (accuracy vs leakage, epsilon in colour), all trials as CSV, a markdown
summary (also the Prefect artifact). Each file is written whole or not at all."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from mnist_etc.atomic import write_file_atomic, write_text_atomic
from mnist_etc.sweep.winner import Candidate, Choice, pareto_front

# User attributes copied to the CSV, in this order, after number/state/objectives/epsilon/params.
CSV_ATTRS = ("val_accuracy", "test_accuracy", "epsilon_rdp", "excess_cosine", "excess_cosine_low",
             "excess_cosine_high", "nonmember_excess_cosine",
             "direct_cosine", "label_baseline_cosine", "prior_baseline_cosine", "identification_rate",
             "perceptual_cosine_1", "perceptual_cosine_2", "ssim", "psnr", "class_match", "test_reconstruction_mse",
             "train_seconds", "attack_seconds", "trial_seconds", "trial_dir", "model_dir", "mlflow_run_id",
             "retry_of", "fail_reason", "error")


def fmt_eps(eps: float) -> str:
    return "inf" if math.isinf(eps) else f"{eps:.3g}"


def trials_csv(trials: list[Any], objective_names: list[str]) -> str:
    param_names = sorted({k for t in trials for k in t.params})
    header = ["number", "state", *objective_names, "epsilon", *param_names, *CSV_ATTRS,
              "datetime_start", "datetime_complete"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for t in sorted(trials, key=lambda t: t.number):
        values = list(t.values) if t.values is not None else ["", ""]
        eps = t.user_attrs.get("epsilon", "")
        w.writerow([t.number, t.state.name, *values, eps, *[t.params.get(p, "") for p in param_names],
                    *[t.user_attrs.get(a, "") for a in CSV_ATTRS],
                    t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else "",
                    t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else ""])
    return buf.getvalue()


def pareto_plot(path: Path, cands: list[Candidate], choice: Choice, study: str, accuracy_metric: str,
                leakage_metric: str, max_leakage: float | None = None) -> Path:
    """Scatter of completed trials; colour = log10 epsilon, grey rings = non-private (epsilon inf); the
    Pareto front joined and labelled with epsilon; the winner starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=120)
    finite = [c for c in cands if math.isfinite(c.epsilon)]
    infinite = [c for c in cands if not math.isfinite(c.epsilon)]
    if finite:
        eps = [max(c.epsilon, 1e-3) for c in finite]
        lo, hi = min(eps), max(eps)
        if hi < lo * 1.5:  # one value (or nearly): give the colour bar a readable span around it
            lo, hi = lo / 2, hi * 2
        sc = ax.scatter([c.accuracy for c in finite], [c.leakage for c in finite], c=eps, cmap="viridis",
                        norm=LogNorm(vmin=lo, vmax=hi), s=42, edgecolors="black", linewidths=0.4,
                        label="DP-SGD trials (colour: epsilon)", zorder=3)
        bar = fig.colorbar(sc, ax=ax, label="epsilon (whole model, log scale)")
        bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        # Within one decade there are no major ticks, so label the minor ones; across decades they crowd.
        bar.ax.yaxis.set_minor_formatter(FormatStrFormatter("%g") if hi / lo < 10 else NullFormatter())
    if infinite:
        ax.scatter([c.accuracy for c in infinite], [c.leakage for c in infinite], facecolors="none",
                   edgecolors="grey", s=42, linewidths=1.2, label="a stage without DP (epsilon = inf)", zorder=3)
    front = pareto_front(cands)
    if front:
        ax.plot([c.accuracy for c in front], [c.leakage for c in front], "-", color="tab:red", lw=1.2,
                alpha=0.8, label="Pareto front", zorder=2)
        x_mid = (min(c.accuracy for c in cands) + max(c.accuracy for c in cands)) / 2
        for i, c in enumerate(front):  # staggered labels with leader lines: front points sit close together
            right = c.accuracy > x_mid
            ax.annotate(f"#{c.number} eps {fmt_eps(c.epsilon)}", (c.accuracy, c.leakage), fontsize=7,
                        xytext=(-10 if right else 10, 30 + 14 * (i % 4)), textcoords="offset points",
                        ha="right" if right else "left",
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"})
    if choice.winner is not None:
        w = choice.winner
        ax.scatter([w.accuracy], [w.leakage], marker="*", s=260, color="gold", edgecolors="black",
                   linewidths=0.8, label=f"winner #{w.number}, eps {fmt_eps(w.epsilon)}"
                   + ("" if choice.qualified else " (fallback)"),
                   zorder=4)
    if max_leakage is not None:
        ax.axhline(max_leakage, color="grey", ls="--", lw=0.8, label=f"policy bound {leakage_metric}")
    ax.set_xlabel(f"{accuracy_metric} (higher is better)")
    ax.set_ylabel(f"{leakage_metric} of the attack's reconstructions (lower leaks less)")
    ax.set_title(f"sweep {study}: {len(cands)} completed trials")
    ax.grid(alpha=0.3)
    ax.margins(0.08)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    try:
        write_file_atomic(path, fig.savefig)
    finally:
        plt.close(fig)
    return path


DASHBOARD_URL = "http://127.0.0.1:8080"   # `mnist-etc dashboard` (default port)
MLFLOW_UI_URL = "http://127.0.0.1:5000"   # `mnist-etc ui` (default port)


def ui_links(study_id: int, experiment_id: str, parent_run_id: str, registered_model: str | None) -> dict[str, str]:
    """Where a sweep is seen in the UIs, at their default addresses on this machine."""
    links = {"Optuna dashboard: the study (`mnist-etc dashboard`)": f"{DASHBOARD_URL}/dashboard/studies/{study_id}",
             "MLflow UI: the sweep's run and its trial runs (`mnist-etc ui`)":
                 f"{MLFLOW_UI_URL}/#/experiments/{experiment_id}/runs/{parent_run_id}"}
    if registered_model:
        links["MLflow UI: the registered champion"] = f"{MLFLOW_UI_URL}/#/models/{registered_model}"
    return links


def summary_markdown(study: str, storage_label: str, counts: dict[str, int], cands: list[Candidate],
                     choice: Choice, accuracy_metric: str, leakage_metric: str, files: dict[str, str],
                     wall_seconds: float, mlflow: dict[str, Any] | None = None,
                     links: dict[str, str] | None = None, search: dict[str, Any] | None = None) -> str:
    lines = [f"# Sweep `{study}`", "",
             f"Storage `{storage_label}`; {wall_seconds:.1f} s this run. Trials: "
             + ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) + ".", ""]
    if cands:
        best_acc = max(cands, key=lambda c: c.accuracy)
        low_leak = min(cands, key=lambda c: c.leakage)
        lines += [f"- best {accuracy_metric}: **{best_acc.accuracy:.4f}** (trial {best_acc.number}, "
                  f"{leakage_metric} {best_acc.leakage:.4f}, epsilon {fmt_eps(best_acc.epsilon)})",
                  f"- lowest {leakage_metric}: **{low_leak.leakage:.4f}** (trial {low_leak.number}, "
                  f"{accuracy_metric} {low_leak.accuracy:.4f}, epsilon {fmt_eps(low_leak.epsilon)})", ""]
        if files.get("pareto_png"):
            lines += [f"![Pareto front: {accuracy_metric} vs {leakage_metric}, epsilon in colour]"
                      f"({Path(files['pareto_png']).name})", ""]
        lines += ["## Pareto front", "", f"| trial | {accuracy_metric} | {leakage_metric} | epsilon | params |",
                  "|---|---|---|---|---|"]
        for c in pareto_front(cands):
            params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in sorted(c.params.items()))
            lines.append(f"| {c.number} | {c.accuracy:.4f} | {c.leakage:.4f} | {fmt_eps(c.epsilon)} | {params} |")
        lines.append("")
    lines += ["## Winner", "", choice.reason[0].upper() + choice.reason[1:], ""]
    if choice.winner is not None:
        w = choice.winner.user_attrs
        held = [f"{k.replace('_', ' ')} {w[k]:.4f}" for k in ("test_accuracy", "excess_cosine") if
                isinstance(w.get(k), (int, float))]
        if held:
            lines += [f"Reported for the winner: {', '.join(held)} (test split, not used for selection).", ""]
    if choice.winner is not None and search:
        eps_search = search.get("epsilon_search")
        lines += [f"**Privacy of the release**: the champion's own training epsilon "
                  f"{fmt_eps(choice.winner.epsilon)}; epsilon_search "
                  f"**{'not accounted' if eps_search is None else fmt_eps(eps_search)}** ({search.get('method')}). "
                  f"{search.get('statement', '')}", ""]
    elif search:
        lines += [f"Search privacy: {search.get('statement', '')}", ""]
    if choice.winner is not None and mlflow:
        lines += [f"Registered in MLflow as `{mlflow.get('registered_model')}` version "
                  f"{mlflow.get('version')} with alias `champion`.", ""]
    if links:
        lines += ["## Open in", ""] + [f"- [{label}]({url})" for label, url in links.items()] + [""]
    if files:
        lines += ["## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()] + [""]
    return "\n".join(lines)


def write_csv(path: Path, trials: list[Any], objective_names: list[str]) -> Path:
    write_text_atomic(Path(path), trials_csv(trials, objective_names))
    return Path(path)
