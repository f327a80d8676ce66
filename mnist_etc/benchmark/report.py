"""Benchmark reports: throughput-vs-p99 plots, the instances x queue-delay heat map, the markdown summary.

Plots are written with matplotlib's Agg backend (no display needed) into the run's staging directory, so
they appear together with results.csv or not at all.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from mnist_etc.benchmark.analysis import OBJECTIVE_LABELS, Analysis, Figure
from mnist_etc.benchmark.results import PointResult
from mnist_etc.triton.model_config import TritonModelConfig

# Short names for the settings that tell configurations apart in legends and tables.
SHORT = {"instance_count": "n", "max_queue_delay_microseconds": "delay_us", "max_batch_size": "mbs",
         "preferred_batch_size": "pref", "dynamic_batching": "dyn", "preserve_ordering": "ordered",
         "intra_op_threads": "threads", "instance_kind": "kind"}


def config_labels(configs: dict[int, TritonModelConfig]) -> dict[int, str]:
    """Label each configuration by instance count, queue delay and whatever else varies in this run."""
    varying = [f for f in SHORT if f in ("instance_count", "max_queue_delay_microseconds")
               or len({getattr(c, f) for c in configs.values()}) > 1]

    def fmt(v: Any) -> str:
        return ",".join(map(str, v)) if isinstance(v, tuple) else ("-" if v == () else str(v))

    return {i: " ".join(f"{SHORT[f]}={fmt(getattr(c, f)) or '-'}" for f in varying) for i, c in configs.items()}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve(ax: Any, figs: Sequence[Figure], label: str, **kw: Any) -> None:
    """One configuration's figures (medians) by concurrency; a re-measured one with its range as error bars."""
    ok = sorted(figs, key=lambda f: f.point.concurrency)
    if not ok:
        return
    line, = ax.plot([f.p99_ms for f in ok], [f.throughput for f in ok], marker="o", label=label, **kw)
    for f in ok:
        ax.annotate(f"c{f.point.concurrency}", (f.p99_ms, f.throughput), textcoords="offset points",
                    xytext=(4, 3), fontsize=7, color=line.get_color())
        if len(f.results) > 1:
            (t_lo, t_hi), (p_lo, p_hi) = f.throughput_range, f.p99_range
            ax.errorbar([f.p99_ms], [f.throughput], yerr=[[f.throughput - t_lo], [t_hi - f.throughput]],
                        xerr=[[f.p99_ms - p_lo], [p_hi - f.p99_ms]], color=line.get_color(), capsize=3,
                        linewidth=1)


def _decorate(ax: Any, analysis: Analysis, title: str) -> None:
    if analysis.budget_ms is not None:
        ax.axvline(analysis.budget_ms, color="crimson", linestyle="--", linewidth=1,
                   label=f"p99 budget {analysis.budget_ms:g} ms")
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (images/s)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def throughput_plots(out_dir: Path, results: Sequence[PointResult], labels: dict[int, str],
                     analysis: Analysis, run: str) -> list[Path]:
    """`throughput_vs_p99.png` with one curve per configuration (points labelled by concurrency), and
    `plots/config-<id>.png` per configuration; the best point starred."""
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    by_config: dict[int, list[PointResult]] = {}
    for r in results:
        by_config.setdefault(r.point.config_id, []).append(r)
    figs: dict[int, list[Figure]] = {cid: [] for cid in by_config}
    for f in analysis.figures:
        figs[f.point.config_id].append(f)
    paths = []
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    for cid, rs in by_config.items():
        base = rs[0].point.baseline
        _curve(ax, figs[cid], labels[cid] + (" (baseline)" if base else ""), linestyle="--" if base else "-")
    if analysis.best is not None:
        ax.plot([analysis.best.p99_ms], [analysis.best.throughput], marker="*", markersize=16, color="gold",
                markeredgecolor="black", linestyle="none", label="best under budget")
    _decorate(ax, analysis, f"{run}: throughput vs p99 latency per configuration")
    if ax.get_legend_handles_labels()[0]:   # a run whose points all failed has nothing to label
        ax.legend(fontsize=7, loc="best", ncol=2 if len(by_config) > 8 else 1)
    fig.tight_layout()
    path = out_dir / "throughput_vs_p99.png"
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    for cid, rs in by_config.items():
        fig, ax = plt.subplots(figsize=(6, 4.2), dpi=100)
        _curve(ax, figs[cid], labels[cid])
        if analysis.best is not None and analysis.best.point.config_id == cid:
            ax.plot([analysis.best.p99_ms], [analysis.best.throughput], marker="*", markersize=14, color="gold",
                    markeredgecolor="black", linestyle="none", label="best under budget")
        failed = [r for r in rs if not r.ok and r.status != "skipped"]
        if failed:
            ax.text(0.01, 0.01, "not measured: " + ", ".join(f"c{r.point.concurrency} ({r.failure})" for r in failed),
                    transform=ax.transAxes, fontsize=7, color="crimson", va="bottom")
        _decorate(ax, analysis, f"config {cid}: {labels[cid]}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = plots / f"config-{cid:02d}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def heat_map(out_dir: Path, results: Sequence[PointResult], analysis: Analysis, run: str) -> Path | None:
    """Throughput over instance count x queue delay at the best point's concurrency (else the concurrency with
    the most measured points). Where several configurations share a cell (other settings differ), the cell
    shows the highest throughput among them; cells whose points all failed say why."""
    if not analysis.figures:
        return None
    plt = _plt()
    import numpy as np

    if analysis.best is not None:
        conc = analysis.best.point.concurrency
    else:
        concs = [f.point.concurrency for f in analysis.figures]
        conc = max(set(concs), key=lambda c: (concs.count(c), c))
    at_figs = [f for f in analysis.figures if f.point.concurrency == conc]
    at = [r for r in results if r.point.concurrency == conc and r.status == "failed"]
    configs = [f.point.config for f in at_figs] + [r.point.config for r in at]
    counts = sorted({c.instance_count for c in configs})
    delays = sorted({c.max_queue_delay_microseconds for c in configs})
    grid = np.full((len(counts), len(delays)), np.nan)
    p99 = np.full_like(grid, np.nan)
    failures: dict[tuple[int, int], str] = {}
    for f in at_figs:
        i, j = counts.index(f.point.config.instance_count), delays.index(f.point.config.max_queue_delay_microseconds)
        if math.isnan(grid[i, j]) or f.throughput > grid[i, j]:
            grid[i, j], p99[i, j] = f.throughput, f.p99_ms
    for r in at:
        i, j = counts.index(r.point.config.instance_count), delays.index(r.point.config.max_queue_delay_microseconds)
        failures.setdefault((i, j), r.failure)
    mixed = len({c.replace(instance_count=1, max_queue_delay_microseconds=0) for c in configs}) > 1
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(delays) + 3), 0.9 * len(counts) + 2.4), dpi=110)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label="throughput (images/s)")
    ax.set_xticks(range(len(delays)), [str(d) for d in delays])
    ax.set_yticks(range(len(counts)), [str(c) for c in counts])
    ax.set_xlabel("max_queue_delay_microseconds")
    ax.set_ylabel("instance_count")
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(len(counts)):
        for j in range(len(delays)):
            if math.isnan(grid[i, j]):
                ax.text(j, i, f"failed\n({failures[(i, j)]})" if (i, j) in failures else "not measured",
                        ha="center", va="center", fontsize=7, color="grey")
                continue
            over = analysis.budget_ms is not None and p99[i, j] > analysis.budget_ms
            text = f"{grid[i, j]:,.0f}\np99 {p99[i, j]:.1f} ms" + ("\nover budget" if over else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if grid[i, j] > mid else "white")
    b = analysis.best
    if b is not None:
        bc = b.point.config
        if bc.instance_count in counts and bc.max_queue_delay_microseconds in delays:
            ax.add_patch(plt.Rectangle((delays.index(bc.max_queue_delay_microseconds) - 0.5,
                                        counts.index(bc.instance_count) - 0.5), 1, 1, fill=False,
                                       edgecolor="gold", linewidth=3))
    ax.set_title(f"{run}: images/s at concurrency {conc}" + (" (best over other settings)" if mixed else "")
                 + ("\ngold frame: best under budget" if b is not None else ""), fontsize=9)
    fig.tight_layout()
    path = out_dir / "heatmap_instances_x_delay.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _num(v: float | None, fmt: str = ",.0f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _measured(f: Figure) -> str:
    if len(f.results) == 1:
        return ""
    lo, hi = f.throughput_range
    return f" (median of {len(f.results)} measurements, {_num(lo)} to {_num(hi)} images/s)"


def verdict_sentence(a: Analysis, labels: dict[int, str], bold: bool = True) -> str:
    """One sentence: which configuration wins under the budget, or that none fits it and the best effort."""
    budget = f"the p99 budget of {a.budget_ms:g} ms" if a.budget_ms is not None else "no p99 budget"
    mark = "**" if bold else ""

    def describe(f: Figure) -> str:
        return (f"{mark}{labels[f.point.config_id]}{mark} at concurrency {f.point.concurrency}: {_num(f.throughput)} images/s, "
                f"p99 {f.p99_ms:.2f} ms{_measured(f)}")

    if a.verdict == "nothing_measured":
        return "No point could be measured (each one's reason is in the table below and in results.csv)."
    if a.verdict == "not_met":
        return (f"No configuration meets {budget}. Best effort (the lowest p99 measured): {describe(a.closest)}.")
    tie = ""
    if a.top_two_apart(None) is False:
        second = a.runner_up()
        tie = (f" It cannot be told apart from {labels[second.point.config_id]} at concurrency "
               f"{second.point.concurrency} ({_num(second.throughput)} images/s): their re-measurements overlap.")
    if a.verdict == "no_budget":
        return f"With {budget}, the highest throughput: {describe(a.best)}.{tie}"
    return f"Best under {budget}: {describe(a.best)}.{tie}"


def summary_markdown(run: str, context: dict[str, Any], results: Sequence[PointResult], labels: dict[int, str],
                     analysis: Analysis, ceiling_ips: float | None, adoption: dict[str, Any] | None) -> str:
    a = analysis
    lines = [f"# Benchmark `{run}`", ""]
    lines += [f"- model: `{context['model']}` version {context['version']} ({context['backend']} backend) on "
              f"{context['server']}",
              f"- load: perf_analyzer over {context['protocol']}, {context['request_batch_size']} image(s) per "
              f"request; "
              f"windows of {context['interval_ms']} ms, stable within {context['stability_percentage']:g}% "
              f"(at most {context['max_trials']} windows)",
              f"- judged on: {OBJECTIVE_LABELS[a.objective]}, p99 budget "
              f"{'none' if a.budget_ms is None else f'{a.budget_ms:g} ms'}; strategy `{context['strategy']}`",
              f"- in-process ceiling (ONNX Runtime, batch {context['request_batch_size']}, this process): "
              f"{_num(ceiling_ips)} images/s"
              + ("" if ceiling_ips else " (no local model.onnx: efficiency not computed)"),
              f"- machine: {context['machine']}; started {context['started']}; took {context['wall_seconds']:.0f} s, "
              f"{a.n_ok} point(s) measured, {a.n_failed} failed, {a.n_skipped} skipped; "
              f"{_num(context.get('seconds_per_point'), '.1f')} s per measured point; "
              f"{context['restarts']} server restart(s)", ""]
    lines += ["## Best configuration", "", verdict_sentence(a, labels), ""]
    if a.best is None:
        if a.verdict == "not_met":
            lines += ["Nothing was written to the model repository. Raise `p99_budget_ms`, or measure lower "
                      "concurrencies.", ""]
    else:
        b = a.best
        eff = b.efficiency(ceiling_ips)
        if eff is not None:
            lines.append(f"Serving efficiency {eff:.2f} (served / in-process).")
        if a.baseline_best is b:
            lines.append("The baseline itself is the best configuration under the budget: nothing in the grid "
                         "beats it.")
        elif a.baseline_best is not None:
            base = a.baseline_best
            lines.append(f"Baseline ({labels[base.point.config_id]}), best under the budget: {_num(base.throughput)} "
                         f"images/s at concurrency {base.point.concurrency}, p99 {base.p99_ms:.2f} ms"
                         f"{_measured(base)}; the best configuration is **{a.improvement:+.1%}** on {a.objective}"
                         + (" (within the spread of the measurements: their ranges overlap, so not a clear gain)."
                            if a.clear_gain(ceiling_ips) is False else "."))
        else:
            lines.append("The baseline has no point within the budget (or failed), so there is no improvement figure.")
        if a.baseline_same_concurrency not in (None, a.best, a.baseline_best):
            s = a.baseline_same_concurrency
            lines.append(f"At the same concurrency ({s.point.concurrency}) the baseline gives {_num(s.throughput)} "
                         f"images/s, p99 {s.p99_ms:.2f} ms.")
        lines += ["", "```", str(b.point.config.to_dict()), "```", ""]
        if adoption:
            lines += ["### Adopting it", ""]
            if adoption.get("written"):
                lines += [f"Written to `{adoption['written']}` (the repository's `config.pbtxt` is unchanged). Either:",
                          "",
                          f"- make it the model's config: `mnist-etc benchmark --adopt {adoption['run_dir']}` "
                          f"(keeps the previous one as `{adoption['backup_name']}`); a running server picks it up "
                          f"on its next load of the model, e.g. `curl -X POST "
                          f"http://127.0.0.1:8000/v2/repository/models/{context['model']}/load`, or on restart;",
                          f"- or keep `config.pbtxt` and start Triton with `--model-config-name="
                          f"{adoption['config_name']}` (Triton reads `<model>/configs/<name>.pbtxt`; works in the "
                          f"official container too).", ""]
            else:
                lines += [f"Not written to a model repository: {adoption.get('note')}.", ""]
    if a.ranking:
        lines += ["## Final ranking (re-measured, interleaved)", "",
                  "| rank | config | c | images/s (median) | min - max | p99 ms (median) | min - max | measurements "
                  "| within budget |", "|---|---|---|---|---|---|---|---|---|"]
        for i, f in enumerate(a.ranking, 1):
            (t_lo, t_hi), (p_lo, p_hi) = f.throughput_range, f.p99_range
            lines.append(f"| {i} | {labels[f.point.config_id]}{' (baseline)' if f.point.baseline else ''} | "
                         f"{f.point.concurrency} | {_num(f.throughput)} | {_num(t_lo)} - {_num(t_hi)} | "
                         f"{f.p99_ms:.2f} | {p_lo:.2f} - {p_hi:.2f} | {len(f.results)} | "
                         f"{'yes' if f.within_budget(a.budget_ms) else 'no'} |")
        lines.append("")
    best_points = {r.index for r in a.best.results} if a.best else set()
    lines += ["## All points", "",
              "A point that never settled shows the median of its windows and their spread (max - min over the "
              "median); perf_analyzer gives the other latencies only for settled points.", "",
              "| # | config | c | phase | status | images/s | p99 ms | spread (images/s, p99) | p50 ms | queue ms | "
              "infer ms | efficiency | reason |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r.index):
        m = r.measurement
        eff = r.efficiency(ceiling_ips)
        mark = " **best**" if r.index in best_points else ""
        status = r.status if not r.ok or r.settled else "ok, unsettled"
        phase = r.point.phase + (f" {r.point.repeat + 1}" if r.point.phase == "confirm" else "")
        spread = f"{_num(m.throughput_spread, '.0%')}, {_num(m.p99_spread, '.0%')}" if m else "-"
        lines.append(f"| {r.index} | {labels[r.point.config_id]}{' (baseline)' if r.point.baseline else ''}{mark} | "
                     f"{r.point.concurrency} | {phase} | {status} | {_num(m.throughput if m else None)} | "
                     f"{_num(m.p99_ms if m else None, '.2f')} | {spread} | {_num(m.p50_ms if m else None, '.2f')} | "
                     f"{_num(m.server_queue_ms if m else None, '.3f')} | "
                     f"{_num(m.server_compute_infer_ms if m else None, '.3f')} | {_num(eff, '.2f')} | "
                     f"{r.reason.replace('|', '/')} |")
    lines += ["", "## Files", "", "- `results.csv`: every point, failed ones with their reason",
              "- `throughput_vs_p99.png`, `plots/config-<id>.png`, `heatmap_instances_x_delay.png`",
              "- `best.json`, `spec.json` (the resolved grid), `raw/point-<n>.csv|log` (perf_analyzer's own report "
              "and output, with the exact command)", ""]
    if context.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in context["notes"]] + [""]
    return "\n".join(lines)
