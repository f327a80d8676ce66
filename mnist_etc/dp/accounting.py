"""Epsilon of the DP-SGD that `mnist_etc.dp.sgd` runs, from dp_accounting (no TensorFlow here).

Each private stage is `epochs * steps_per_epoch` Poisson-sampled Gaussian mechanisms with sampling rate
q = batch / n and the *effective* noise multiplier: sigma for per-example clipping, sigma / 2 whenever
microbatches are used (one example can share its microbatch with another and move that microbatch's clipped
gradient by up to 2C; `effective_noise`). The two stages compose: the model's epsilon is
that of both stages together, larger than either stage's alone, and infinite if either the encoder or the
classifier saw the training data without noise.

The headline is the PLD accountant's epsilon (tight up to its discretisation); the RDP accountant's figure
(an upper bound, what most papers quote) is reported beside it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import dp_accounting
from dp_accounting import pld, rdp

from mnist_etc.config import TrainConfig

PLD_DISCRETISATION = 1e-3
SECRET = "secret (OS entropy)"   # where DP-SGD's sampling and noise come from (mnist_etc.dp.sgd.dp_rng)


def effective_noise(noise_multiplier: float, microbatches: int | None) -> float:
    """The noise multiplier the accountant sees: halved whenever microbatches are used. Under Poisson sampling the
    batch size varies and examples are dealt to microbatches at random, so even with as many microbatches as the
    expected batch size two examples can share one, and removing one of them moves that microbatch's clipped
    mean by up to 2C (per-example clipping, microbatches unset, moves the sum by at most C)."""
    if microbatches is not None:
        return noise_multiplier / 2
    return noise_multiplier


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Poisson-sampled steps per epoch: n / batch in expectation each epoch touches every example once."""
    return max(1, n_train // batch_size)


def stage_event(n_train: int, batch_size: int, epochs: int, noise_multiplier: float,
                microbatches: int | None = None) -> dp_accounting.DpEvent:
    if noise_multiplier <= 0:
        return dp_accounting.NonPrivateDpEvent()
    q = min(1.0, batch_size / n_train)
    sigma = effective_noise(noise_multiplier, microbatches)
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    return dp_accounting.SelfComposedDpEvent(step, epochs * steps_per_epoch(n_train, batch_size))


def _is_private(events: tuple[dp_accounting.DpEvent, ...]) -> bool:
    return not any(isinstance(e, dp_accounting.NonPrivateDpEvent) for e in events)


@functools.lru_cache(maxsize=256)
def _epsilons(events: tuple[dp_accounting.DpEvent, ...], delta: float) -> tuple[float, float]:
    """(PLD, RDP) epsilon of the composed events."""
    if not _is_private(events):
        return math.inf, math.inf
    composed = dp_accounting.ComposedDpEvent(list(events))
    r = rdp.RdpAccountant()
    r.compose(composed)
    p = pld.PLDAccountant(value_discretization_interval=PLD_DISCRETISATION)
    p.compose(composed)
    return float(p.get_epsilon(delta)), float(r.get_epsilon(delta))


def epsilon_of_events(events: list[dp_accounting.DpEvent], delta: float) -> float:
    """The PLD (headline) epsilon."""
    return _epsilons(tuple(events), delta)[0]


@dataclass(frozen=True)
class PrivacyReport:
    epsilon: float          # PLD, whole model (both stages composed); inf if any stage is non-private
    epsilon_rdp: float      # RDP bound of the same
    delta: float
    ae_epsilon: float       # of each stage alone (PLD, RDP)
    clf_epsilon: float
    ae_epsilon_rdp: float
    clf_epsilon_rdp: float
    ae_effective_noise: float   # the noise multiplier the accountant used (halved whenever microbatches are used)
    clf_effective_noise: float
    microbatch_size: float      # examples per microbatch in expectation (batch / microbatches; 1 without them)
    microbatches: int | None = None   # None: per-example clipping
    randomness: str = SECRET    # where sampling and noise came from
    sampling: str = "poisson"

    def statement(self) -> str:
        if math.isinf(self.epsilon):
            which = [s for s, e in (("autoencoder", self.ae_epsilon), ("classifier", self.clf_epsilon))
                     if math.isinf(e)]
            return (f"not differentially private: the {' and '.join(which)} trained without DP noise "
                    f"(epsilon = inf).")
        text = (f"({self.epsilon:.3g}, {self.delta:.3g})-DP for the whole model under add/remove-one adjacency: "
                f"PLD accounting of Poisson-sampled DP-SGD (RDP bound {self.epsilon_rdp:.3g}; autoencoder eps "
                f"{self.ae_epsilon:.3g}, classifier eps {self.clf_epsilon:.3g})")
        if self.microbatches is not None:
            each = f"{self.microbatch_size:g} example{'' if self.microbatch_size == 1 else 's'}"
            text += (f"; {self.microbatches} microbatches ({each} each on average, dealt at "
                     f"random to Poisson-sampled batches, so two can share one) move a clipped gradient by up to 2C, "
                     f"so the accountant used noise multipliers {self.ae_effective_noise:g} (autoencoder) / "
                     f"{self.clf_effective_noise:g} (classifier), half the configured ones")
        if self.randomness == SECRET:
            text += "; sampling and noise from a secret source (OS entropy)"
        else:
            text += f"; DP randomness {self.randomness}: NO real guarantee"
        return text + "."

    def as_dict(self) -> dict:
        return {"epsilon": self.epsilon, "epsilon_rdp": self.epsilon_rdp, "delta": self.delta,
                "ae_epsilon": self.ae_epsilon, "clf_epsilon": self.clf_epsilon,
                "ae_epsilon_rdp": self.ae_epsilon_rdp, "clf_epsilon_rdp": self.clf_epsilon_rdp,
                "ae_effective_noise": self.ae_effective_noise, "clf_effective_noise": self.clf_effective_noise,
                "microbatch_size": self.microbatch_size, "microbatches": self.microbatches,
                "sampling": self.sampling, "randomness": self.randomness,
                "accountant": "dp_accounting PLD (headline) and RDP", "statement": self.statement()}


def training_events(cfg: TrainConfig, n_train: int) -> list[dp_accounting.DpEvent]:
    """The two stages of one training as dp_accounting events (autoencoder, then classifier), composed."""
    return [stage_event(n_train, cfg.batch_size, cfg.ae_epochs, cfg.ae_noise_multiplier, cfg.microbatches),
            stage_event(n_train, cfg.batch_size, cfg.clf_epochs, cfg.clf_noise_multiplier, cfg.microbatches)]


def privacy_report(cfg: TrainConfig, n_train: int, randomness: str = SECRET) -> PrivacyReport:
    ae, clf = training_events(cfg, n_train)
    both, ae_only, clf_only = _epsilons((ae, clf), cfg.delta), _epsilons((ae,), cfg.delta), _epsilons((clf,), cfg.delta)
    mb = 1 if cfg.microbatches is None else cfg.batch_size / cfg.microbatches
    return PrivacyReport(
        epsilon=both[0], epsilon_rdp=both[1], delta=cfg.delta, ae_epsilon=ae_only[0], clf_epsilon=clf_only[0],
        ae_epsilon_rdp=ae_only[1], clf_epsilon_rdp=clf_only[1],
        ae_effective_noise=effective_noise(cfg.ae_noise_multiplier, cfg.microbatches),
        clf_effective_noise=effective_noise(cfg.clf_noise_multiplier, cfg.microbatches),
        microbatch_size=mb, microbatches=cfg.microbatches, randomness=randomness)
