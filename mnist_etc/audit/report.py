"""An audit on disk: `artifacts/audits/<UTC timestamp>/` with audit.json, report.md, grid.png and roc.png."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from mnist_etc.atomic import staged_dir, write_json_atomic
from mnist_etc.audit.attacks.report import GRID_ROWS, TRAINING_DATA_TITLE, save_grid
from mnist_etc.audit.bounds import pure_dp_epsilon_for_auc
from mnist_etc.audit.membership import save_roc_plot
from mnist_etc.audit.reconstruction import describe_reconstruction

AUDITS_DIR = Path("artifacts/audits")
ATTACK_COLUMNS = (("served_attack", "public-prior through the served model"),
                  ("in_process_attack", "public-prior in process"),
                  ("own_decoder_attack", "own-decoder in process (insider)"))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.4f}"
    return "-" if x is None else str(x)


def _interval(s: dict[str, float], key: str) -> str:
    return f"{s[key]:+.4f} [{s[key + '_low']:+.4f}, {s[key + '_high']:+.4f}]"


def _epsilon(privacy: dict[str, Any]) -> str:
    """PLD headline with the RDP bound beside it when the record has one ("inf" strings read as inf)."""
    eps = float(privacy.get("epsilon", math.inf))
    if math.isinf(eps):
        return "inf"
    rdp = privacy.get("epsilon_rdp")
    return f"{eps:.3g}" + (f" (RDP bound {float(rdp):.3g})" if rdp is not None else "")


def membership_epsilon_line(m: dict[str, Any], privacy: dict[str, Any]) -> str:
    """membership_epsilon_lb beside the accounted epsilon (older records have none)."""
    if m.get("membership_epsilon_lb") is None:
        return "Membership as epsilon: not measured (an older audit)."
    e = m.get("membership_epsilon") or {}
    counts = (f" (threshold fitted on one half; on the other {e['true_positives']} of {e['members']} members and "
              f"{e['false_positives']} of {e['non_members']} non-members flagged; TPR >= {e['tpr_low']:.3f}, "
              f"FPR <= {e['fpr_high']:.3f}, Clopper-Pearson, delta {e['delta']:.3g})" if e else "")
    return (f"Membership as epsilon: **membership_epsilon_lb {m['membership_epsilon_lb']:.3f}** (95%) beside the "
            f"accounted epsilon **{_epsilon(privacy)}**{counts}: the model is shown not to be "
            f"(membership_epsilon_lb, delta)-DP; above the accounted epsilon would mean the accounting or DP-SGD is wrong.")


def membership_auc_reason(bound: float) -> str:
    if bound >= 1:
        return f"The AUC bound {bound:g} admits any membership signal."
    return (f"The AUC bound {bound:g} is the largest AUC a pure epsilon-DP mechanism allows at epsilon "
            f"{pure_dp_epsilon_for_auc(bound):.3f} (max AUC = e^eps / (1 + e^eps)): a membership signal beyond what "
            f"a strongly private model could show, whatever the accounted epsilon.")


def membership_lines(m: dict[str, Any]) -> list[str]:
    return [f"Membership inference ({m.get('score', 'loss')} through the served model, {m['n_members']} training "
            f"members vs {m['n_non_members']} held-out non-members): AUC {m['auc']:.4f} [{m['auc_low']:.4f}, "
            f"{m['auc_high']:.4f}] (95% bootstrap), p = {_fmt(m.get('p_value'))} against no signal (one-sided "
            f"Mann-Whitney); advantage {_fmt(m['advantage'])} (threshold chosen on one half, measured on the other; "
            f"in sample {_fmt(m.get('advantage_in_sample'))}); TPR {_fmt(m.get('tpr_at_0_1pct_fpr'))} at 0.1% FPR "
            f"and {_fmt(m.get('tpr_at_1pct_fpr'))} at 1% FPR (with {m['n_non_members']} non-members an FPR below "
            f"{1 / m['n_non_members']:.2%} means no false positive at all)."]


def canary_lines(c: dict[str, Any] | None) -> list[str]:
    if c is None:
        return ["One-run canary audit: not run (the model is not DP; --canary-audit on runs it)."]
    acc = float(c["accounted_epsilon"])
    lines = [f"One-run canary audit (white-box, every step; Steinke, Nasr and Jagielski 2023, f-DP bound of "
             f"Mahloujifar et al. 2025): **epsilon_lb {float(c['epsilon_lb']):.3f}** at {c['confidence']:.0%} "
             f"confidence beside the model's accounted epsilon {'inf' if math.isinf(acc) else f'{acc:.3f}'}"
             + (f" (**{float(c['epsilon_lb']) / acc:.0%} of it**)" if math.isfinite(acc) and acc > 0 else "")
             + f"; Steinke et al.'s bound {_fmt(c.get('epsilon_lb_steinke'))}."]
    if "k_in" in c:
        lines.append(
            f"{c['canaries']} {c['design']}; {c['k_in']} guesses \"in\" and {c['k_out']} \"out\" planned on a "
            f"simulation of the accounted mechanism, {c['correct']} of {c['guesses']} right; a correct implementation "
            f"reaches {_fmt(c.get('expected_epsilon_lb'))} with these canaries (simulated), noise mis-scaled 2x "
            f"{'would' if c.get('catches_2x') else 'would not'} be caught (simulated epsilon_lb "
            f"{_fmt(c.get('bug_epsilon_lb'))}); the observation {'REJECTS' if c.get('rejects_accounted') else 'does not reject'} "
            f"the accounted trade-off curve; the scores {'depend' if c.get('scores_depend_on_training_data') else 'do not depend'} "
            f"on training digits; {c['seconds']:.0f} s.")
    if not c["consistent"]:
        lines.append("The observation contradicts the accounting: **the accounting or the DP-SGD code is wrong**.")
    return lines


def _audit_verdict(v: dict[str, Any]) -> str:
    verdict = v.get("verdict") or ("PASSED" if v["passed"] else "FAILED")
    if verdict == "INCONCLUSIVE":
        return f"INCONCLUSIVE ({'counted as passed' if v['passed'] else 'counted as failed'}: --inconclusive " \
               f"{v.get('inconclusive_policy', 'fail')})"
    return verdict


def render_markdown(rec: dict[str, Any], grid_name: str = "grid.png", roc_name: str = "roc.png") -> str:
    from mnist_etc.audit.gates import INTERSECTION_UNION

    v = rec["verdict"]
    served = rec["served_attack"]
    lines = [
        f"# Privacy audit {_audit_verdict(v)}: {rec['lineage']}",
        "",
        f"- audited: {rec['created']}; model `{rec['model_path']}`"
        + (f"; served as `{rec['served']['model']}` v{rec['served']['version']} at {rec['served']['url']}"
           if rec.get("served") else ""),
        f"- privacy of training: epsilon {_epsilon(rec['privacy'])}; {rec['privacy'].get('statement', '')}",
        f"- verdict: {'; '.join(v['reasons']) if v['reasons'] else 'every test passed'}",
        f"- {INTERSECTION_UNION} Each gate says PASS only when its interval lies wholly on the safe side of its "
        f"bound, FAIL when wholly on the unsafe side, INCONCLUSIVE otherwise.",
        "",
        "| test | figure | bound | verdict | why |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in v["tests"]:
        verdict = t.get("verdict") or ("PASS" if t["passed"] else "FAIL")
        lines.append(f"| {t['name']} | {_fmt(t['figure'])} | {t['bound']} | **{verdict}** | {t['explanation']} |")
    for t in v.get("not_applicable", []):
        lines.append(f"| {t['name']} | - | - | does not apply | {t['explanation']} |")
    present = [(key, label) for key, label in ATTACK_COLUMNS if key in rec]
    lines += ["", "| figure | " + " | ".join(label for _, label in present) + " |",
              "| --- |" + " --- |" * len(present)]
    rows = [("excess cosine over label-only [95%]", lambda s: _interval(s, "excess_cosine")),
            ("non-members", lambda s: _interval(s, "nonmember_excess_cosine")),
            ("member - non-member gap", lambda s: _interval(s, "member_gap")),
            ("cosine: attack / label-only / prior", lambda s: f"{s['direct_cosine']:.4f} / "
             f"{s['label_baseline_cosine']:.4f} / {s['prior_baseline_cosine']:.4f}"),
            ("identification rate (chance)", lambda s: f"{s['identification_rate']:.3f} "
             f"({s['identification_chance']:.3f})"),
            ("class match", lambda s: f"{s['class_match']:.3f}"),
            ("SSIM", lambda s: f"{s['ssim']:.3f}")]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(rec[key]["summary"]) for key, _ in present) + " |")
    for label, cell in (("queries of the search", lambda e: f"{e['queries']:,}"),
                        ("seconds of the search", lambda e: f"{e['seconds']:.1f}"),
                        ("images scored per second", lambda e: f"{e.get('images_per_second', 0):,.0f}")):
        lines.append(f"| {label} | " + " | ".join(cell(rec[key]) for key, _ in present) + " |")
    m = rec["membership"]
    n = int(served["summary"]["victims_per_group"])
    lines += [
        "",
        f"{n} training members and {n} held-out non-members attacked (the grid shows "
        + ("training members: see its title" if rec.get("show_training_data") else "non-members only")
        + f"; no image, index or score of a member is published); hill climbing sent {served['queries']:,} "
        f"images through the served model ({served['images_per_second']:,.0f} images/s). The headline is the "
        f"reconstruction's cosine to its victim minus that of the public class-mean image of the predicted "
        f"class (what the label alone gives away); the member - non-member gap is the part DP-SGD bounds.",
        "",
        *membership_lines(m),
        "",
        membership_auc_reason(float(rec.get("config", {}).get("membership_auc_bound", 0.6))),
        "",
        membership_epsilon_line(m, rec["privacy"]),
        "",
        *([describe_reconstruction(rec["reconstruction"]), ""] if rec.get("reconstruction") else []),
        *canary_lines(rec.get("canary_audit")),
        "",
        f"Previous audit of this lineage: {v['previous'] or 'none'}"
        + (f"; excess cosine change {v['growth']:+.4f}" if v["growth"] is not None else "")
        + (" [%+.4f, %+.4f] (95%%)" % tuple(v["growth_interval"]) if v.get("growth_interval") else ""),
        "",
        f"![{TRAINING_DATA_TITLE if rec.get('show_training_data') else GRID_ROWS}]({grid_name})",
        "",
        f"![membership ROC, log-log]({roc_name})",
    ]
    return "\n".join(lines) + "\n"


def save_audit(rec: dict[str, Any], out_dir: Path) -> Path:
    """Write the audit atomically; `rec['_served_result']` (the AttackResult) supplies the image grid, which
    shows held-out non-members only unless `rec['show_training_data']` (then its title says so)."""
    served = rec.pop("_served_result")
    scores = rec.pop("_membership_scores", None)
    rec.setdefault("created", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    with staged_dir(out_dir) as tmp:
        save_grid(served, tmp / "grid.png", bool(rec.get("show_training_data")))
        if scores:
            m = rec["membership"]
            save_roc_plot(scores["members"], scores["non_members"], tmp / "roc.png",
                          f"membership ROC (AUC {m['auc']:.3f})")
        (tmp / "report.md").write_text(render_markdown(rec))
        write_json_atomic(tmp / "audit.json", rec)
    return out_dir
