"""Membership inference by confidence threshold (Yeom et al. 2018): members tend to have lower loss.

The attacker scores each example by the logit-scaled confidence on its true class, log(p / (1 - p)) (the
statistic LiRA models, Carlini et al. 2022; without shadow models it ranks examples exactly as the negative
loss does) and guesses "member" above a threshold. On equal numbers of training (member) and held-out
(non-member) examples we report:
- the ROC AUC with a percentile-bootstrap 95% interval (members and non-members resampled separately), which
  is what the audit gates on, and the one-sided Mann-Whitney p-value against "no membership signal";
- the advantage (TPR - FPR) honestly: the threshold chosen on one random half, measured on the other
  (the in-sample maximum over thresholds is biased upward and is kept only for the record);
- TPR at 0.1% and 1% FPR (the low-FPR regime the field reports): the best TPR among thresholds whose
  empirical FPR is at most that; with n non-members, FPRs below 1/n are measured as 0 false positives;
- `membership_epsilon_lb`: the attack as an empirical epsilon lower bound (`split_half_epsilon`): the threshold
  that maximises the bound on one random half, TPR and FPR counted on the other half and turned into
  epsilon_lb with Clopper-Pearson bounds (`mnist_etc.audit.bounds.membership_epsilon_bound`, both ratios, at
  the model's delta, 95%). A DP model whose epsilon_lb exceeds its accounted epsilon has a bug.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mnist_etc.data import DataSplit

SCORE = "logit-scaled confidence on the true class"
LOW_FPRS = (0.001, 0.01)


@dataclass(frozen=True)
class MembershipResult:
    auc: float
    auc_low: float
    auc_high: float
    p_value: float              # one-sided Mann-Whitney, H0: members score no higher than non-members
    advantage: float            # TPR - FPR on the held-out half at the threshold chosen on the other half
    advantage_in_sample: float  # max over thresholds on all examples (biased upward; for the record)
    tpr_at_0_1pct_fpr: float
    tpr_at_1pct_fpr: float
    n_members: int
    n_non_members: int
    membership_epsilon_lb: float = 0.0   # 95%: the model is not (this, delta)-DP; see split_half_epsilon
    membership_epsilon: dict | None = None   # its counts, Clopper-Pearson bounds, threshold, delta
    score: str = SCORE

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def roc_auc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """P(score of a random member > score of a random non-member), ties counted half (Mann-Whitney U)."""
    scores = np.concatenate([member_scores, non_member_scores])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    unique, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    n_m, n_n = len(member_scores), len(non_member_scores)
    return float((ranks[:n_m].sum() - n_m * (n_m + 1) / 2) / (n_m * n_n))


def auc_interval(member_scores: np.ndarray, non_member_scores: np.ndarray, seed: int = 0,
                 resamples: int = 1000) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the AUC."""
    rng = np.random.default_rng(seed)
    m, n = np.asarray(member_scores), np.asarray(non_member_scores)
    aucs = [roc_auc(m[rng.integers(0, len(m), len(m))], n[rng.integers(0, len(n), len(n))])
            for _ in range(resamples)]
    return float(np.quantile(aucs, 0.025)), float(np.quantile(aucs, 0.975))


def max_advantage(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    thresholds = np.unique(np.concatenate([member_scores, non_member_scores]))
    tpr = (member_scores[None, :] >= thresholds[:, None]).mean(axis=1)
    fpr = (non_member_scores[None, :] >= thresholds[:, None]).mean(axis=1)
    return float(max(0.0, np.max(tpr - fpr)))


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y - log(1 - p_y) from logits, stably: the true logit minus the log-sum-exp of the others."""
    logits = np.asarray(logits, np.float64)
    true = logits[np.arange(len(labels)), labels]
    others = logits.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    top = others.max(axis=1, keepdims=True)
    return true - (top[:, 0] + np.log(np.exp(others - top).sum(axis=1)))


def mann_whitney_p(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    from scipy.stats import mannwhitneyu

    if np.ptp(np.concatenate([member_scores, non_member_scores])) == 0:
        return 1.0
    return float(mannwhitneyu(member_scores, non_member_scores, alternative="greater").pvalue)


def tpr_at_fpr(member_scores: np.ndarray, non_member_scores: np.ndarray, fpr: float) -> float:
    """The best TPR among thresholds (guess member when score > t) with empirical FPR <= fpr."""
    allowed = int(np.floor(fpr * len(non_member_scores)))
    ranked = np.sort(non_member_scores)[::-1]
    t = ranked[allowed] if allowed < len(ranked) else -np.inf
    return float(np.mean(member_scores > t))


def split_half_advantage(member_scores: np.ndarray, non_member_scores: np.ndarray, seed: int = 0) -> float:
    """TPR - FPR on one random half at the threshold that maximises it on the other half."""
    rng = np.random.default_rng(seed)
    pm, pn = rng.permutation(len(member_scores)), rng.permutation(len(non_member_scores))
    hm, hn = len(pm) // 2, len(pn) // 2
    fit_m, fit_n = member_scores[pm[:hm]], non_member_scores[pn[:hn]]
    thresholds = np.unique(np.concatenate([fit_m, fit_n]))
    gain = (fit_m[None, :] >= thresholds[:, None]).mean(axis=1) - (fit_n[None, :] >= thresholds[:, None]).mean(axis=1)
    t = thresholds[int(np.argmax(gain))]
    return float(np.mean(member_scores[pm[hm:]] >= t) - np.mean(non_member_scores[pn[hn:]] >= t))


def split_half_epsilon(member_scores: np.ndarray, non_member_scores: np.ndarray, seed: int = 0,
                       delta: float = 0.0, confidence: float = 0.95) -> dict:
    """The epsilon lower bound of the threshold attack, honestly: the threshold (guess "member" at score >= t)
    chosen to maximise the bound on one random half (the halves of `split_half_advantage`), the counts taken on
    the other half, so the confidence is not spent on the choice. Returns the bound's figures and the threshold."""
    from mnist_etc.audit.bounds import membership_epsilon_bound, membership_epsilon_lbs

    m, n = np.asarray(member_scores, np.float64), np.asarray(non_member_scores, np.float64)
    rng = np.random.default_rng(seed)
    pm, pn = rng.permutation(len(m)), rng.permutation(len(n))
    hm, hn = len(pm) // 2, len(pn) // 2
    fit_m, fit_n, test_m, test_n = m[pm[:hm]], n[pn[:hn]], m[pm[hm:]], n[pn[hn:]]
    thresholds = np.unique(np.concatenate([fit_m, fit_n]))
    tp = (fit_m[None, :] >= thresholds[:, None]).sum(axis=1)
    fp = (fit_n[None, :] >= thresholds[:, None]).sum(axis=1)
    fitted = membership_epsilon_lbs(tp, len(fit_m), fp, len(fit_n), confidence, delta)
    best = int(np.argmax(fitted))
    # Midway to the next lower score: the same counts on the fitted half, with a margin on the held-out one.
    t = float((thresholds[best] + thresholds[best - 1]) / 2 if best > 0 else thresholds[best])
    held_out = membership_epsilon_bound(int(np.sum(test_m >= t)), len(test_m), int(np.sum(test_n >= t)),
                                        len(test_n), confidence, delta)
    return {**held_out.as_dict(), "threshold": t, "fitted_epsilon_lb": float(max(fitted))}


def roc_points(member_scores: np.ndarray, non_member_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every threshold, from (0, 0) to (1, 1)."""
    thresholds = np.unique(np.concatenate([member_scores, non_member_scores]))[::-1]
    tpr = (member_scores[None, :] >= thresholds[:, None]).mean(axis=1)
    fpr = (non_member_scores[None, :] >= thresholds[:, None]).mean(axis=1)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def save_roc_plot(member_scores: np.ndarray, non_member_scores: np.ndarray, path, title: str) -> None:
    """The ROC on log-log axes (the low-FPR regime is where a membership attack matters), chance as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr = roc_points(np.asarray(member_scores, float), np.asarray(non_member_scores, float))
    floor = 0.5 / max(len(non_member_scores), 1)   # zero cannot be drawn on log axes
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.loglog(np.maximum(fpr, floor), np.maximum(tpr, floor), drawstyle="steps-post", label="attack")
    grid = np.logspace(np.log10(floor), 0, 50)
    ax.loglog(grid, grid, "k--", lw=0.8, label="chance")
    for f in LOW_FPRS:
        ax.axvline(f, color="grey", lw=0.5)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title,
           xlim=(floor, 1), ylim=(floor, 1))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def membership_statistics(member_scores: np.ndarray, non_member_scores: np.ndarray, seed: int = 0,
                          delta: float = 0.0) -> dict:
    """Every figure of `MembershipResult` that depends on the scores alone (and the delta of the epsilon bound)."""
    m, n = np.asarray(member_scores, np.float64), np.asarray(non_member_scores, np.float64)
    low, high = auc_interval(m, n, seed)
    eps = split_half_epsilon(m, n, seed, delta)
    return dict(auc=roc_auc(m, n), auc_low=low, auc_high=high, p_value=mann_whitney_p(m, n),
                advantage=split_half_advantage(m, n, seed), advantage_in_sample=max_advantage(m, n),
                tpr_at_0_1pct_fpr=tpr_at_fpr(m, n, LOW_FPRS[0]), tpr_at_1pct_fpr=tpr_at_fpr(m, n, LOW_FPRS[1]),
                membership_epsilon_lb=eps["epsilon_lb"], membership_epsilon=eps)


def loss_threshold_attack(score: Callable[[np.ndarray], np.ndarray], split: DataSplit, n: int = 500,
                          seed: int = 0, scores_out: dict | None = None, delta: float = 0.0) -> MembershipResult:
    """`score` maps images to logits (in-process model or the served endpoint). `scores_out`, when given,
    receives the member and non-member scores (for the ROC plot). `delta` is the model's: the epsilon lower
    bound is of (epsilon, delta)-DP."""
    rng = np.random.default_rng(seed)
    held_out_x = np.concatenate([split.x_val, split.x_test])
    held_out_y = np.concatenate([split.y_val, split.y_test])
    n = min(n, split.n_train, len(held_out_y))
    members = rng.choice(split.n_train, n, replace=False)
    non_members = rng.choice(len(held_out_y), n, replace=False)
    m_logits = np.asarray(score(split.x_train[members]), np.float64)
    n_logits = np.asarray(score(held_out_x[non_members]), np.float64)
    m_score = logit_confidence(m_logits, split.y_train[members])
    n_score = logit_confidence(n_logits, held_out_y[non_members])
    if scores_out is not None:
        scores_out.update(members=m_score, non_members=n_score)
    return MembershipResult(**membership_statistics(m_score, n_score, seed, delta), n_members=n, n_non_members=n)
