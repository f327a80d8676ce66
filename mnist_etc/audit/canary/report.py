"""A canary audit on disk: `canary_audit.json`, `report.md` and `scores.png` (included vs excluded canaries)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.audit.canary.audit import describe


def save_scores_plot(scores: np.ndarray, included: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = np.isfinite(scores)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if finite.any():
        bins = np.linspace(np.percentile(scores[finite], 0.5), np.percentile(scores[finite], 99.95), 60)
        ax.hist(scores[included & finite], bins=bins, alpha=0.6, label="trained on")
        ax.hist(scores[~included & finite], bins=bins, alpha=0.6, label="not trained on")
        ax.set_yscale("log")
    ax.set(xlabel="canary score (log likelihood ratio, every step)", ylabel="canaries", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def render_markdown(rec: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {e:.3f} |" for k, e in rec.get("planning_grid", {}).items())
    verdict = "ACCOUNTING BUG" if not rec["consistent"] else "consistent"
    return (f"# One-run canary audit: {verdict}\n\n"
            f"- model: `{rec.get('model_path', '-')}` (accounted epsilon {rec.get('model_epsilon', '-')})\n"
            f"- {describe(rec)}\n"
            f"- epsilon_lb / accounted epsilon: {_num(rec.get('fraction_of_accounted'))}; epsilon_lb / what a "
            f"correct implementation reaches with {rec['canaries']} canaries: {_num(rec.get('fraction_of_expected'))}\n"
            f"- the observation {'REJECTS' if rec['rejects_accounted'] else 'does not reject'} the accounted "
            f"trade-off curve at {rec['confidence']:.0%} confidence\n"
            f"- planned on a simulation of the claimed mechanism, before the canaries were scored: {rec['k_in']} "
            f"guesses \"in\" and {rec['k_out']} \"out\"; simulated noise x0.5 gives epsilon_lb "
            f"{_num(rec.get('bug_epsilon_lb'))} ({'caught' if rec.get('catches_2x') else 'not caught'})\n"
            f"- canaries: {rec['design']}; steps observed {rec.get('steps_observed')}; the scores "
            f"{'depend' if rec.get('scores_depend_on_training_data') else 'do not depend'} on the training data\n"
            f"- seconds: {rec['seconds']:.1f}\n\n"
            f"| guesses in / out (planning simulation) | simulated epsilon_lb |\n| --- | --- |\n{rows}\n\n"
            f"![canary scores](scores.png)\n")


def save_canary_audit(rec: dict[str, Any], out_dir: Path) -> Path:
    scores, included = rec.pop("_scores"), rec.pop("_included")
    rec.setdefault("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    with staged_dir(out_dir) as tmp:
        save_scores_plot(scores, included, tmp / "scores.png", f"epsilon_lb {rec['epsilon_lb']:.2f}")
        (tmp / "report.md").write_text(render_markdown(rec))
        write_json_atomic(tmp / "canary_audit.json", rec)
    return out_dir
