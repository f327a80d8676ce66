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

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(np.percentile(scores, 0.5), np.percentile(scores, 99.5), 40)
    ax.hist(scores[included], bins=bins, alpha=0.6, label="trained on")
    ax.hist(scores[~included], bins=bins, alpha=0.6, label="not trained on")
    ax.set(xlabel="canary score (weight moved against the canary's sign)", ylabel="canaries", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(rec: dict[str, Any]) -> str:
    rows = "\n".join(f"| {r} | {g['correct']} | {g['epsilon_lb']:.3f} |" for r, g in rec["grid"].items())
    return (f"# One-run canary audit: {'consistent' if rec['consistent'] else 'ACCOUNTING BUG'}\n\n"
            f"- model: `{rec.get('model_path', '-')}` (accounted epsilon {rec.get('model_epsilon', '-')})\n"
            f"- {describe(rec)}\n- canaries: {rec['design']}\n- seconds: {rec['seconds']:.1f}\n\n"
            f"| guesses (k in + k out) | correct | epsilon_lb at the Bonferroni-corrected confidence |\n"
            f"| --- | --- | --- |\n{rows}\n\n![canary scores](scores.png)\n")


def save_canary_audit(rec: dict[str, Any], out_dir: Path) -> Path:
    scores, included = rec.pop("_scores"), rec.pop("_included")
    rec.setdefault("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    with staged_dir(out_dir) as tmp:
        save_scores_plot(scores, included, tmp / "scores.png", f"epsilon_lb {rec['epsilon_lb']:.2f}")
        (tmp / "report.md").write_text(render_markdown(rec))
        write_json_atomic(tmp / "canary_audit.json", rec)
    return out_dir
