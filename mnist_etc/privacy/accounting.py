"""Privacy accounting of DP-SGD training with dp_accounting's RDP accountant.

Each private stage is `steps` Poisson-sampled Gaussian mechanisms (sampling rate batch/n, noise
multiplier sigma). The two stages compose. A model is only as private as its least private stage: if
either the encoder or the classifier saw the training data without noise, epsilon is infinite.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting
from dp_accounting import rdp

from mnist_etc.config import TrainConfig


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Training drops the last partial batch (DP microbatching needs full batches)."""
    return max(1, n_train // batch_size)


def stage_event(n_train: int, batch_size: int, epochs: int, noise_multiplier: float) -> dp_accounting.DpEvent:
    if noise_multiplier <= 0:
        return dp_accounting.NonPrivateDpEvent()
    q = min(1.0, batch_size / n_train)
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(step, epochs * steps_per_epoch(n_train, batch_size))


def epsilon_of_events(events: list[dp_accounting.DpEvent], delta: float) -> float:
    if any(isinstance(e, dp_accounting.NonPrivateDpEvent) for e in events):
        return math.inf
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.ComposedDpEvent(events))
    return float(accountant.get_epsilon(delta))


@dataclass(frozen=True)
class PrivacyReport:
    epsilon: float          # of the whole model (both stages composed); inf if any stage is non-private
    delta: float
    ae_epsilon: float       # of each stage alone
    clf_epsilon: float

    def statement(self) -> str:
        if math.isinf(self.epsilon):
            which = [s for s, e in (("autoencoder", self.ae_epsilon), ("classifier", self.clf_epsilon))
                     if math.isinf(e)]
            return (f"not differentially private: the {' and '.join(which)} trained without DP noise "
                    f"(epsilon = inf).")
        return (f"({self.epsilon:.3g}, {self.delta:.3g})-DP for the whole model under add/remove-one adjacency, "
                f"RDP accounting of Poisson-sampled DP-SGD (autoencoder eps {self.ae_epsilon:.3g}, "
                f"classifier eps {self.clf_epsilon:.3g}).")


def privacy_report(cfg: TrainConfig, n_train: int) -> PrivacyReport:
    delta = cfg.delta if cfg.delta is not None else 1.0 / n_train
    ae = stage_event(n_train, cfg.batch_size, cfg.ae_epochs, cfg.ae_noise_multiplier)
    clf = stage_event(n_train, cfg.batch_size, cfg.clf_epochs, cfg.clf_noise_multiplier)
    return PrivacyReport(epsilon=epsilon_of_events([ae, clf], delta), delta=delta,
                         ae_epsilon=epsilon_of_events([ae], delta), clf_epsilon=epsilon_of_events([clf], delta))
