"""Membership inference by loss threshold (Yeom et al. 2018): members tend to have lower loss.

The attacker scores each example by its negative cross-entropy loss under the model and guesses
"member" above a threshold. We report the ROC AUC over all thresholds and the attacker's advantage,
max over thresholds of (true-positive rate - false-positive rate), on equal numbers of training
(member) and held-out (non-member) examples. AUC 0.5 / advantage 0 means no measurable leakage. The AUC
comes with a percentile-bootstrap 95% interval (members and non-members resampled separately), which is
what the audit gates on: a membership signal counts only when the whole interval lies above the bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mnist_etc.data import DataSplit


@dataclass(frozen=True)
class MembershipResult:
    auc: float
    auc_low: float
    auc_high: float
    advantage: float
    n_members: int
    n_non_members: int
    mean_member_loss: float
    mean_non_member_loss: float

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


def loss_threshold_attack(score: Callable[[np.ndarray], np.ndarray], split: DataSplit, n: int = 500,
                          seed: int = 0) -> MembershipResult:
    """`score` maps images to logits (in-process model or the served endpoint)."""
    rng = np.random.default_rng(seed)
    held_out_x = np.concatenate([split.x_val, split.x_test])
    held_out_y = np.concatenate([split.y_val, split.y_test])
    n = min(n, split.n_train, len(held_out_y))
    members = rng.choice(split.n_train, n, replace=False)
    non_members = rng.choice(len(held_out_y), n, replace=False)
    m_loss = cross_entropy(np.asarray(score(split.x_train[members]), np.float64), split.y_train[members])
    n_loss = cross_entropy(np.asarray(score(held_out_x[non_members]), np.float64), held_out_y[non_members])
    low, high = auc_interval(-m_loss, -n_loss, seed)
    return MembershipResult(auc=roc_auc(-m_loss, -n_loss), auc_low=low, auc_high=high,
                            advantage=max_advantage(-m_loss, -n_loss),
                            n_members=n, n_non_members=n, mean_member_loss=float(m_loss.mean()),
                            mean_non_member_loss=float(n_loss.mean()))
