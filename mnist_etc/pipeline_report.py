"""The pipeline's one summary: `artifacts/pipeline/<run>/summary.md` with the key plots copied beside it."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from mnist_etc.atomic import staged_dir, write_json_atomic

PIPELINE_DIR = Path("artifacts/pipeline")


def _num(x: Any, fmt: str = ".4f") -> str:
    if x is None:
        return "-"
    x = float(x)
    return "inf" if math.isinf(x) else format(x, fmt)


def _search(winner: dict[str, Any]) -> str:
    eps = winner.get("epsilon_search", None)
    method = (winner.get("search") or {}).get("method", "")
    return "not accounted" if eps is None else f"{_num(eps, '.3g')} ({method})"


def render_summary(run: str, sweep: dict[str, Any], export: dict[str, Any], serve: dict[str, Any],
                   bench: dict[str, Any], audit: dict[str, Any], seconds: dict[str, float]) -> str:
    w = sweep.get("winner") or {}
    b = bench.get("summary", {})
    auc_interval = audit.get("membership_auc_interval")
    lines = [
        f"# mnist-etc pipeline {run}",
        "",
        "| stage | result | seconds |",
        "| --- | --- | --- |",
        f"| sweep `{sweep['study']}` | {sweep['counts'].get('COMPLETE', 0)} trials complete; best accuracy "
        f"{_num(sweep['best_accuracy'])}, lowest leakage {_num(sweep['lowest_leakage'])} | {seconds['sweep']:.0f} |",
        f"| champion | {w.get('reason', 'no winner')} (epsilon {_num(w.get('epsilon'), '.3g')} for its training; "
        f"epsilon_search {_search(w)} for releasing it and the search that chose it) | |",
        f"| export | `{export['model']}` v{export['version']}, parity max abs diff {export['max_abs_diff']:.1e}, "
        f"test accuracy {_num(export['tf_test_accuracy'])} | {seconds['export']:.0f} |",
        f"| serve | Triton at {serve['url']}: {serve['n_images']} test images, accuracy "
        f"{_num(serve['accuracy'])} (in-process {_num(serve['in_process_accuracy'])}) | {seconds['serve']:.0f} |",
        f"| benchmark | best {_num(b.get('best_throughput'), ',.0f')} images/s at p99 "
        f"{_num(b.get('best_p99_ms'), '.2f')} ms ({_num(b.get('improvement'), '+.1%') if b.get('improvement') is not None else '-'} "
        f"vs the served config); {b.get('points_ok', 0)} points ok, {b.get('points_failed', 0)} failed "
        f"| {seconds['benchmark']:.0f} |",
        f"| privacy audit | {audit.get('verdict') or ('PASSED' if audit['passed'] else 'FAILED')}"
        f"{': ' + '; '.join(audit.get('reasons') or []) if audit.get('reasons') else ''}; epsilon "
        f"{_num(audit.get('epsilon'), '.3g')}, excess leakage {_num(audit['leakage'], '+.4f')}"
        f"{' [%+.4f, %+.4f]' % tuple(audit['leakage_interval']) if audit.get('leakage_interval') else ''}, "
        f"membership AUC {_num(audit['membership_auc'])}"
        f"{' [%.4f, %.4f]' % tuple(auc_interval) if auc_interval and None not in auc_interval else ''}"
        f"{', p %s' % _num(audit['membership_p_value'], '.3g') if audit.get('membership_p_value') is not None else ''}, "
        f"{'membership epsilon_lb %s, ' % _num(audit['membership_epsilon_lb'], '.3f') if audit.get('membership_epsilon_lb') is not None else ''}"
        f"{'canary epsilon_lb %s, ' % _num(audit['epsilon_lb'], '.3f') if audit.get('epsilon_lb') is not None else ''}"
        f"{_num(audit.get('triton_images_per_second'), ',.0f')} "
        f"attack images/s through Triton | {seconds['audit']:.0f} |",
        "",
    ]
    for title, name in (("Pareto front of the sweep (accuracy vs leakage, epsilon in colour)", "pareto.png"),
                        ("Benchmark: throughput vs p99 per configuration", "throughput_vs_p99.png"),
                        ("Benchmark: instances x queue delay at the best concurrency", "heatmap.png"),
                        ("Audit: victims (members, then non-members), reconstructions through Triton, label-only baseline, "
                         "attacker's prior", "audit_grid.png")):
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    return "\n".join(lines)


def save_pipeline_summary(out_dir: Path, markdown: str, record: dict[str, Any], plots: dict[str, str | None]) -> Path:
    """`plots` maps target file name -> source path (missing sources are skipped, e.g. no heat map)."""
    with staged_dir(Path(out_dir)) as tmp:
        for target, source in plots.items():
            if source and Path(source).is_file():
                shutil.copyfile(source, tmp / target)
        (tmp / "summary.md").write_text(markdown)
        write_json_atomic(tmp / "pipeline.json", record)
    return Path(out_dir)
