"""An audit on disk: `artifacts/audits/<UTC timestamp>/` with audit.json, report.md and grid.png."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.images import save_pair_grid

AUDITS_DIR = Path("artifacts/audits")


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.4f}"
    return str(x)


def render_markdown(rec: dict[str, Any], grid_name: str = "grid.png") -> str:
    v = rec["verdict"]
    served = rec["served_attack"]
    lines = [
        f"# Privacy audit {'PASSED' if v['passed'] else 'FAILED'}: {rec['lineage']}",
        "",
        f"- audited: {rec['created']}; model `{rec['model_path']}`"
        + (f"; served as `{rec['served']['model']}` v{rec['served']['version']} at {rec['served']['url']}"
           if rec.get("served") else ""),
        f"- privacy of training: {rec['privacy']['statement']}",
        f"- verdict: {'; '.join(v['reasons']) if v['reasons'] else 'leakage within bound and margin'}",
        "",
        "| reconstruction score | served attack | in-process attack | random-code baseline |",
        "| --- | --- | --- | --- |",
    ]
    local = rec.get("in_process_attack", {}).get("summary", {})
    for key, value in served["summary"].items():
        lines.append(f"| {key} | {_fmt(value)} | {_fmt(local.get(key, '-'))} | {_fmt(served['baseline'][key])} |")
    m = rec["membership"]
    lines += [
        "",
        f"Hill climbing sent {served['queries']:,} images through the served model "
        f"({served['images_per_second']:,.0f} images/s).",
        "",
        f"Membership inference (loss threshold, {m['n_members']} members vs {m['n_non_members']} held out): "
        f"AUC {m['auc']:.4f}, attacker advantage {m['advantage']:.4f}.",
        "",
        f"Previous audit of this lineage: {v['previous'] or 'none'}"
        + (f"; leakage change {v['growth']:+.4f}" if v["growth"] is not None else ""),
        "",
        f"![victims (top), reconstructions through the served model (middle), random codes (bottom)]({grid_name})",
    ]
    return "\n".join(lines) + "\n"


def save_audit(rec: dict[str, Any], out_dir: Path) -> Path:
    """Write the audit atomically; `rec['_served_result']` (the AttackResult) supplies the image grid."""
    served = rec.pop("_served_result")
    rec.setdefault("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    with staged_dir(out_dir) as tmp:
        save_pair_grid(served.originals, served.reconstructions, tmp / "grid.png",
                       extra_rows=[served.baseline_images])
        (tmp / "report.md").write_text(render_markdown(rec))
        write_json_atomic(tmp / "audit.json", rec)
    return out_dir
