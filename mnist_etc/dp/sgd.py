"""DP-SGD as the accountant assumes it: Poisson sampling, per-example (or per-microbatch) clipping, Gaussian
noise, normalised by the expected batch size.

Each step includes every training example independently with probability q = B / n (`batch_size` B), so
the realised batch size varies and may be 0. The gradients of the sampled examples are clipped to L2 norm
C and summed, Gaussian noise N(0, (sigma C)^2) is added per coordinate, and the sum is divided by B, the
*expected* batch size (as Opacus does): dividing by the realised size would leak it.

Microbatches (M of them): each sampled example goes to one of M microbatches, independently and uniformly,
so adding or removing one example changes only its own microbatch. Each microbatch's mean gradient is
clipped to C; the sum over microbatches gets the same noise and is divided by M. One example can move its
microbatch's clipped gradient by up to 2C (from g to g', both of norm <= C), so the add/remove sensitivity
is 2C and the accountant must see noise multiplier sigma / 2 (`mnist_etc.dp.accounting.effective_noise`).

Clipping paths:
- `ghost` (a single Dense layer, the classifier head): each example's gradient norm comes from its input and
  its output gradient, ||x_i||^2 ||g_i||^2 + ||g_i||^2, without materialising per-example gradients; the
  clipped sum is then X^T (c * G) and sum(c * G) (Li et al. 2022, "ghost clipping");
- `layerwise` (a stack of Conv2D / Conv2DTranspose / Dense layers, the conv autoencoder): per-example gradients
  from each layer's input and output gradient after one ordinary backward pass (`mnist_etc.dp.layerwise`);
- `registry` (the same stacks, no microbatches): tensorflow-privacy's fast gradient clipping, its gradient
  norms from its layer registry extended with our Conv2D / Conv2DTranspose functions
  (`mnist_etc.dp.fast_clipping`), then a second backward pass of the clip-weighted loss; no example's
  gradient is formed. Equal to the others, but a second backward pass costs more than the layerwise products
  at these layer sizes (README, Performance), so `clipping_path` does not pick it;
- `vectorised` (any model; the reference the others are tested against): per-example backprop with
  `tf.vectorized_map`.
Microbatches take the per-example gradients of the layerwise or vectorised path, average them per microbatch
and clip the means. `clipping_path` picks the fastest path that applies.

Gradient canaries (`CanaryBlock`, for the one-run audit in `mnist_etc.audit.canary`) are examples given by
their gradient, on a block of coordinates of their own that the loss never reads: they are sampled at the
real examples' rate, assigned to microbatches, clipped and noised as the real ones, and every step's noisy
clipped sum on the block is handed to the auditor (white-box, every iterate).

The randomness the guarantee rests on (sampling, microbatch assignment, noise) comes from `dp_rng`: a
generator seeded from 128 bits of OS entropy unless the caller passes the loudly named insecure seed.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mnist_etc.config import TrainConfig
from mnist_etc.dp.accounting import SECRET
from mnist_etc.dp import fast_clipping, layerwise
from mnist_etc.dp.layerwise import OutputLoss
from mnist_etc.tf_quiet import tf

# (model, x, y) -> per-example loss [b]
PerExampleLoss = Callable[[tf.keras.Model, tf.Tensor, tf.Tensor], tf.Tensor]

STAGES = ("autoencoder", "classifier")   # the two trained stages, in training order


def dp_rng(insecure_seed: int | None) -> tuple[np.random.Generator, str]:
    """The generator of sampling and noise, and how it was seeded (recorded in model.json)."""
    if insecure_seed is None:
        return np.random.default_rng(secrets.randbits(128)), SECRET
    return (np.random.default_rng([insecure_seed, 0x5EED]),
            f"seeded from seed={insecure_seed} (INSECURE: reproducible, tests only)")


def mse_of_outputs(out: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    d = out - y
    return tf.reduce_mean(tf.reshape(d * d, [tf.shape(d)[0], -1]), axis=1)


def xent_of_outputs(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(y, tf.int32), logits)


def mse_per_example(model: tf.keras.Model, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return mse_of_outputs(model(x, training=True), y)


def xent_per_example(model: tf.keras.Model, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return xent_of_outputs(model(x, training=True), y)


# The layerwise path needs the loss as a function of the model's outputs.
OUTPUT_LOSSES = {mse_per_example: mse_of_outputs, xent_per_example: xent_of_outputs}


def clipping_path(model: tf.keras.Model, loss: PerExampleLoss, microbatches: int | None) -> str:
    dense_only = len(model.layers) == 1 and isinstance(model.layers[0], tf.keras.layers.Dense)
    if dense_only and microbatches is None and loss is xent_per_example \
            and model.layers[0].activation is tf.keras.activations.linear:
        return "ghost"
    return "layerwise" if loss in OUTPUT_LOSSES and layerwise.supports(model) else "vectorised"


def _clip_factors(sq_norms: tf.Tensor, clip: float) -> tf.Tensor:
    return tf.minimum(1.0, clip / tf.sqrt(tf.maximum(sq_norms, 1e-24)))


def clipped_sum_registry(model: tf.keras.Model, output_loss: OutputLoss, x: tf.Tensor, y: tf.Tensor,
                         clip: float) -> list[tf.Tensor]:
    """Two-pass fast clipping: tensorflow-privacy's per-example gradient norms (one forward and backward pass,
    `fast_clipping.layer_registry`), then the gradient of sum_i c_i loss_i with c_i = min(1, clip / norm_i)."""
    from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads
    norms = clip_grads.compute_gradient_norms(model, fast_clipping.layer_registry(), x, y,
                                              per_example_loss_fn=lambda y_, out, _w: output_loss(out, y_))
    c = tf.stop_gradient(_clip_factors(tf.square(norms), clip))
    with tf.GradientTape() as tape:
        weighted = tf.reduce_sum(c * output_loss(model(x, training=True), y))
    return tape.gradient(weighted, model.trainable_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def per_example_grads(model: tf.keras.Model, loss: PerExampleLoss, x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
    """[b, *shape] per variable."""
    def one(args):
        xi, yi = args
        with tf.GradientTape() as tape:
            li = loss(model, xi[None], yi[None])[0]
        return tape.gradient(li, model.trainable_variables)

    return tf.vectorized_map(one, (x, y))


def clipped_sum_vectorised(model: tf.keras.Model, loss: PerExampleLoss, x: tf.Tensor, y: tf.Tensor,
                           clip: float) -> list[tf.Tensor]:
    return clip_and_sum(per_example_grads(model, loss, x, y), clip)


def clip_and_sum(grads: list[tf.Tensor], clip: float) -> list[tf.Tensor]:
    """Per-example gradients ([b, *shape] per variable) clipped to `clip` each and summed."""
    sq = tf.add_n([tf.reduce_sum(tf.reshape(g * g, [tf.shape(g)[0], -1]), axis=1) for g in grads])
    c = _clip_factors(sq, clip)
    return [tf.tensordot(c, g, axes=1) for g in grads]


def clipped_sum_microbatches(grads: list[tf.Tensor], assignment: tf.Tensor, microbatches: int, clip: float,
                             block: tf.Tensor | None = None, block_counts: tf.Tensor | None = None) -> list[tf.Tensor]:
    """Sum over microbatches of each microbatch's mean gradient clipped to `clip`; empty ones add 0. `grads` are
    per-example gradients. `block` ([microbatches, k]: the sampled gradient canaries' sums on their own
    coordinates, `CanaryBlock`) and `block_counts` (canaries per microbatch) join the microbatches before their
    means are taken and clipped; the block's clipped sum [k] is then returned last."""
    counts = tf.math.unsorted_segment_sum(tf.ones_like(assignment, tf.float32), assignment, microbatches)
    sums = [tf.math.unsorted_segment_sum(g, assignment, microbatches) for g in grads]
    if block is not None:
        counts = counts + block_counts
        sums = sums + [block]
    means = [s / tf.reshape(tf.maximum(counts, 1.0), [-1] + [1] * (len(s.shape) - 1)) for s in sums]
    sq = tf.add_n([tf.reduce_sum(tf.reshape(m * m, [microbatches, -1]), axis=1) for m in means])
    c = _clip_factors(sq, clip)
    return [tf.tensordot(c, m, axes=1) for m in means]


def clipped_sum_ghost_dense(dense: tf.keras.layers.Dense, x: tf.Tensor, y: tf.Tensor,
                            clip: float) -> list[tf.Tensor]:
    """Per-example clipping of a linear softmax classifier from input and output-gradient norms only."""
    logits = tf.matmul(x, dense.kernel) + dense.bias
    g = tf.nn.softmax(logits) - tf.one_hot(tf.cast(y, tf.int32), tf.shape(logits)[1])   # dloss_i / dlogits_i
    g_sq = tf.reduce_sum(g * g, axis=1)
    sq = tf.reduce_sum(x * x, axis=1) * g_sq + g_sq
    cg = _clip_factors(sq, clip)[:, None] * g
    return [tf.matmul(x, cg, transpose_a=True), tf.reduce_sum(cg, axis=0)]


@dataclass(frozen=True)
class CanaryBlock:
    """The one-run audit's gradient canaries (Steinke, Nasr, Jagielski 2023, section 6: Dirac gradient canaries)
    on an m-coordinate block appended to the model's parameters, a block the loss never reads: canary i is an
    example whose gradient is `norm` times the i-th unit vector of the block, so real examples have gradient 0
    there and a canary has gradient 0 on the model's weights. The included canaries are examples of the
    training set: each step samples them at the real examples' rate q (each is one more example, whose
    guarantee the accountant's (q, sigma, steps) describe), deals them to microbatches, clips and noises them
    with the real ones. Every step, the block's noisy clipped sum in units of C goes to `observe` (the auditor
    sees every iterate); the block is never applied to the model."""

    included: np.ndarray                      # [m] bool: which canaries are in the training set
    norm: float                               # each canary's gradient norm before clipping
    observe: Callable[[np.ndarray], None]     # receives the [m] noisy clipped block sum / C of each step

    @property
    def m(self) -> int:
        return len(self.included)


@dataclass
class DPSGD:
    """One stage's DP-SGD: `step(x_all, y_all)` samples, clips, noises and applies one update."""

    model: tf.keras.Model
    loss: PerExampleLoss
    optimizer: tf.keras.optimizers.Optimizer
    l2_norm_clip: float
    noise_multiplier: float
    batch_size: int
    microbatches: int | None
    rng: np.random.Generator
    path: str = "vectorised"           # or "layerwise", "ghost", "registry": see `clipping_path`
    canaries: CanaryBlock | None = None   # the one-run audit's gradient canaries (on a block of their own)

    @classmethod
    def from_config(cls, model: tf.keras.Model, loss: PerExampleLoss, cfg: TrainConfig, stage: str,
                    rng: np.random.Generator, canaries: CanaryBlock | None = None,
                    noise_scale: float = 1.0) -> "DPSGD":
        """One stage's DP-SGD as the training settings describe it (what the accountant accounts): that stage's
        noise multiplier and Adam learning rate, the clip, batch size and microbatches, on the fastest clipping
        path that applies. `noise_scale` multiplies the noise actually added and nothing else: a test-only switch
        that makes training differ from what the accountant assumes (the canary audit must catch it)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        noise, lr = {"autoencoder": (cfg.ae_noise_multiplier, cfg.ae_learning_rate),
                     "classifier": (cfg.clf_noise_multiplier, cfg.clf_learning_rate)}[stage]
        return cls(model, loss, tf.keras.optimizers.Adam(lr), cfg.l2_norm_clip, noise * noise_scale, cfg.batch_size,
                   cfg.microbatches, rng, path=clipping_path(model, loss, cfg.microbatches), canaries=canaries)

    def __post_init__(self) -> None:
        if self.path == "ghost":
            dense = [layer for layer in self.model.layers if isinstance(layer, tf.keras.layers.Dense)]
            if len(self.model.layers) != 1 or len(dense) != 1 or self.microbatches is not None:
                raise ValueError("ghost clipping needs a model made of one Dense layer and no microbatches")
            # clipped_sum_ghost_dense derives the output gradients of softmax cross-entropy on linear logits.
            if self.loss is not xent_per_example or dense[0].activation is not tf.keras.activations.linear:
                raise ValueError("ghost clipping needs a linear Dense layer trained with xent_per_example")
            self._dense = dense[0]
        elif self.path in ("layerwise", "registry"):
            if self.loss not in OUTPUT_LOSSES or not layerwise.supports(self.model):
                raise ValueError(f"{self.path} clipping needs a stack of Conv2D / Conv2DTranspose / Dense layers "
                                 "and a loss of mnist_etc.dp.sgd.OUTPUT_LOSSES")
            if self.path == "registry" and self.microbatches is not None:
                raise ValueError("registry clipping has no microbatches here (tensorflow-privacy's are contiguous "
                                 "and equal; ours are random)")
        elif self.path != "vectorised":
            raise ValueError(f"unknown clipping path {self.path!r}")
        # reduce_retracing: realised batch sizes vary, so one trace generalises over the batch dimension.
        self._sum = tf.function(self._clipped_sum, reduce_retracing=True)
        self._update = tf.function(self._noisy_update, reduce_retracing=True)
        self.batch_sizes: list[int] = []

    @property
    def divisor(self) -> int:
        return self.microbatches if self.microbatches is not None else self.batch_size

    def _clipped_sum(self, x, y, assignment, block=None, block_counts=None):
        if self.path == "ghost":
            return clipped_sum_ghost_dense(self._dense, x, y, self.l2_norm_clip)
        if self.path == "registry":
            return clipped_sum_registry(self.model, OUTPUT_LOSSES[self.loss], x, y, self.l2_norm_clip)
        if self.path == "layerwise" and self.microbatches is None:
            return layerwise.clipped_sum(self.model, OUTPUT_LOSSES[self.loss], x, y, self.l2_norm_clip)
        if self.path == "layerwise":
            grads = layerwise.per_example_grads_all(self.model, OUTPUT_LOSSES[self.loss], x, y)
        else:
            grads = per_example_grads(self.model, self.loss, x, y)
        if self.microbatches is not None:
            return clipped_sum_microbatches(grads, assignment, self.microbatches, self.l2_norm_clip, block,
                                            block_counts)
        return clip_and_sum(grads, self.l2_norm_clip)

    def _noisy_update(self, x, y, assignment, noise, block=None, block_counts=None):
        sums = self._clipped_sum(x, y, assignment, block, block_counts)
        if block is not None:
            sums, block_sum = sums[:-1], sums[-1]
        grads = [(g + n) / self.divisor for g, n in zip(sums, noise)]
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return block_sum if block is not None else tf.constant(0.0)

    def sample(self, n: int) -> np.ndarray:
        """Poisson sampling: each of the n examples independently with probability batch_size / n."""
        return np.flatnonzero(self.rng.random(n) < min(1.0, self.batch_size / n))

    def _assignment(self, b: int) -> np.ndarray:
        return self.rng.integers(0, self.microbatches or 1, b).astype(np.int32)

    def clipped_sum(self, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """The sum of clipped gradients (before noise) of these examples: what the sensitivity bounds."""
        if len(x) == 0:
            return [np.zeros(v.shape, np.float32) for v in self.model.trainable_variables]
        return [t.numpy() for t in self._sum(x, y, self._assignment(len(x)))]

    def gaussian(self, shape: tuple[int, ...]) -> np.ndarray:
        """N(0, (sigma C)^2) per coordinate: the noise of every coordinate, the canary block's included."""
        return self.l2_norm_clip * self.noise_multiplier * self.rng.standard_normal(shape)

    def noise(self) -> list[np.ndarray]:
        return [self.gaussian(tuple(v.shape)).astype(np.float32) for v in self.model.trainable_variables]

    def step(self, x_all: np.ndarray, y_all: np.ndarray) -> None:
        idx = self.sample(len(x_all))
        chosen = self._sample_canaries(len(x_all))
        self.batch_sizes.append(len(idx) + len(chosen))
        noise = self.noise()
        block = block_counts = None
        if len(chosen) and self.microbatches is not None:
            where = self._assignment(len(chosen))
            block = np.zeros((self.microbatches, len(chosen)), np.float32)
            block[where, np.arange(len(chosen))] = self.canaries.norm
            block_counts = np.bincount(where, minlength=self.microbatches).astype(np.float32)
        if len(idx) == 0:  # no real example sampled: noise (and canaries) alone, divided by the expected size
            self.optimizer.apply_gradients(zip([tf.constant(n / self.divisor) for n in noise],
                                               self.model.trainable_variables))
            block_sum = None if block is None else _clip_microbatch_block(block, block_counts, self.l2_norm_clip)
        elif block is None:
            self._update(x_all[idx], y_all[idx], self._assignment(len(idx)), noise)
            block_sum = None
        else:
            block_sum = self._update(x_all[idx], y_all[idx], self._assignment(len(idx)), noise, block,
                                     block_counts).numpy()
        if self.canaries is not None:
            self._observe_canaries(chosen, block_sum)

    def _sample_canaries(self, n_real: int) -> np.ndarray:
        """The included canaries this step samples, each with the real examples' probability B / n."""
        if self.canaries is None:
            return np.zeros(0, int)
        members = np.flatnonzero(self.canaries.included)
        return members[self.rng.random(len(members)) < min(1.0, self.batch_size / n_real)]

    def _observe_canaries(self, chosen: np.ndarray, block_sum: np.ndarray | None) -> None:
        """The block's noisy clipped sum, in units of C, to the auditor. Per-example clipping: a canary's
        gradient is its own example's, clipped to C whatever the real examples are. Microbatches: `block_sum`,
        clipped with the real examples of each microbatch."""
        total = np.zeros(self.canaries.m)
        if block_sum is None:
            total[chosen] = min(self.canaries.norm, self.l2_norm_clip)
        else:
            total[chosen] = block_sum
        self.canaries.observe((total + self.gaussian((self.canaries.m,))) / self.l2_norm_clip)


def _clip_microbatch_block(block: np.ndarray, counts: np.ndarray, clip: float) -> np.ndarray:
    """A step that sampled canaries and no real example: each microbatch's mean of canaries clipped to C, summed."""
    means = block / np.maximum(counts, 1.0)[:, None]
    norms = np.linalg.norm(means, axis=1)
    return (means * np.minimum(1.0, clip / np.maximum(norms, 1e-12))[:, None]).sum(axis=0)
