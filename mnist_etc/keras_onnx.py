"""Keras networks as one ONNX Runtime program: the attack's inner loop at the speed of the hardware.

`OnnxProgram([decoder, target])` writes the chained networks as one ONNX graph, by hand, in ONNX's own
channels-first layout, and runs it with ONNX Runtime. Measured on this machine (README, Performance), this
decodes and scores 2.2x as many images per second as the fused TensorFlow program. Four things make it so:

- **Small batches, every core.** Candidates go through in chunks of `CHUNK` rows, each chunk on one core, as
  many chunks at once as there are cores. A chunk's activations (about 40 KB per image) stay in the core's
  cache; TensorFlow on a whole iteration's batch (4,096 images, 160 MB of activations) waits on memory.
- **No layout shuffles.** Keras is channels-last; the graph is channels-first throughout, and the two places
  where the order of a flat vector meets a feature map (the decoder's Dense -> Reshape, the encoder's
  Flatten -> Dense) are folded into the Dense weights by permuting their rows or columns. Images enter and
  leave in Keras' layout (one transpose at each end of the graph, only where the end is an image).
- **No multiplications by zeros, no interleaving.** A stride-2 transposed convolution inserts zeros between
  its input's pixels; here it is ordinary convolutions, one per output phase with only the taps that reach it,
  and its output stays split into phases, which the next transposed convolution reads directly
  (`_polyphase`). The image is interleaved once, at the end of the decoder, where it is smallest.
- **Fewer multiply-adds.** A linear Dense followed by another Dense is one Dense (the encoder's code layer
  and the linear classifier head: 1568 x 10 instead of 1568 x 32 + 32 x 10).

The conversion knows Dense, Conv2D, Conv2DTranspose, Reshape, Flatten and Activation layers with linear, relu,
sigmoid or tanh activations. Anything else raises `Unsupported`, and every program is checked against
TensorFlow on a probe batch when it is built; callers fall back to TensorFlow (`in_process.InProcess`).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from mnist_etc.tf_quiet import tf

layers = tf.keras.layers

CHUNK = 128         # rows per ONNX Runtime call: the best of 32 to 256 on this machine (about 220,000 images/s)
OPSET = 17
# A transposed convolution of a plain map with fewer filters stays ConvTranspose: the decoder's last layer (1 filter)
# as four 1-filter phase convolutions took 6x as long as ConvTranspose here.
MIN_PHASE_FILTERS = 8
_ACTIVATIONS = {"linear": None, "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


class Unsupported(ValueError):
    """A network this converter cannot write as ONNX, or whose ONNX program disagrees with TensorFlow."""


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _pool() -> ThreadPoolExecutor:
    # One pool per process, one thread per core, shared by every program (sweep trials run in threads). A
    # forked child gets its own: the parent's threads do not exist there.
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL, _POOL_PID = ThreadPoolExecutor(cores(), thread_name_prefix="onnx-program"), os.getpid()
        return _POOL


def chain(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers of a model that is one chain (nested Sequential models, or a Functional model whose
    layers each feed the next, as `models.build_full_model` builds it), in order."""
    if isinstance(model, tf.keras.Sequential):
        out = []
        for layer in model.layers:
            out.extend(chain(layer) if isinstance(layer, tf.keras.Model) else [layer])
        return out
    if isinstance(model, tf.keras.Model):
        out, previous = [], None
        try:
            entries = model.get_config()["layers"]
        except (NotImplementedError, KeyError, TypeError) as e:
            raise Unsupported(f"model {model.name!r}: no layer graph ({e})") from None
        for entry in entries:
            inbound = entry.get("inbound_nodes") or []
            if entry.get("class_name") == "InputLayer" and previous is None and not inbound:
                previous = entry["name"]
                continue
            if len(inbound) != 1 or len(inbound[0]) != 1 or inbound[0][0][0] != previous:
                raise Unsupported(f"model {model.name!r} is not a single chain of layers")
            layer = model.get_layer(entry["name"])
            out.extend(chain(layer) if isinstance(layer, tf.keras.Model) else [layer])
            previous = entry["name"]
        return out
    raise Unsupported(f"{type(model).__name__} is not a Keras model")


def _activation(layer) -> str | None:
    name = getattr(layer.activation, "__name__", None)
    if name not in _ACTIVATIONS:
        raise Unsupported(f"layer {layer.name!r}: activation {name!r}")
    return _ACTIVATIONS[name]


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _hwc_to_chw(h: int, w: int, c: int) -> np.ndarray:
    """Index map: position i of a channels-first flat vector holds element [i] of the channels-last one."""
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()


class _Graph:
    def __init__(self, phases: bool = True):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.phases = phases   # False: transposed convolutions as ConvTranspose (the benchmark's comparison)
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, array: np.ndarray) -> str:
        self.count += 1
        name = f"w{self.count}"
        dtype = np.int64 if np.asarray(array).dtype.kind == "i" else np.float32
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array, dtype), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        self.count += 1
        out = f"{kind.lower()}{self.count}"
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def act(self, x: str, kind: str | None) -> str:
        return x if kind is None else self.op(kind, [x])


def _dense_weights(layer) -> tuple[np.ndarray, np.ndarray]:
    kernel = layer.kernel.numpy().astype(np.float64)
    bias = layer.bias.numpy().astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
    return kernel, bias


def _emit(g: _Graph, chain_: list, x: str, shape: tuple) -> tuple[str, tuple]:
    """Append the layers to the graph. `shape` is ("flat", n) for a Keras-ordered vector, ("chw-flat", c, h, w)
    for a channels-first flattened map, or ("map", c, h, w) for an NCHW feature map."""
    todo = [l for l in chain_ if not isinstance(l, layers.InputLayer)]
    i = 0
    while i < len(todo):
        layer = todo[i]
        if not isinstance(layer, (layers.Conv2DTranspose, layers.Activation)):
            x, shape = _materialise(g, x, shape)
        if isinstance(layer, layers.Dense):
            if shape[0] == "map":
                raise Unsupported(f"layer {layer.name!r}: Dense on a feature map")
            kernel, bias = _dense_weights(layer)
            kind = _activation(layer)
            while kind is None and i + 1 < len(todo) and isinstance(todo[i + 1], layers.Dense):
                i += 1
                nk, nb = _dense_weights(todo[i])
                kernel, bias, kind = kernel @ nk, bias @ nk + nb, _activation(todo[i])
            if shape[0] == "chw-flat":
                _, c, h, w = shape
                kernel = kernel[_hwc_to_chw(h, w, c)]
            nxt = todo[i + 1] if i + 1 < len(todo) else None
            if isinstance(nxt, layers.Reshape) and len(nxt.target_shape) == 3 and min(nxt.target_shape) >= 1:
                h, w, c = nxt.target_shape
                perm = _hwc_to_chw(h, w, c)
                x = g.act(g.op("Gemm", [x, g.const(kernel[:, perm]), g.const(bias[perm])]), kind)
                x = g.op("Reshape", [x, g.const(np.array([-1, c, h, w], np.int64))])
                shape = ("map", c, h, w)
                i += 2
                continue
            x = g.act(g.op("Gemm", [x, g.const(kernel), g.const(bias)]), kind)
            shape = ("flat", kernel.shape[1])
        elif isinstance(layer, layers.Flatten):
            if shape[0] != "map":
                raise Unsupported(f"layer {layer.name!r}: Flatten of a vector")
            x, shape = g.op("Flatten", [x], axis=1), ("chw-flat",) + shape[1:]
        elif isinstance(layer, layers.Reshape):
            if shape[0] != "flat" or len(layer.target_shape) != 3 or min(layer.target_shape) < 1:
                raise Unsupported(f"layer {layer.name!r}: Reshape other than a vector to a feature map")
            h, w, c = layer.target_shape
            x = g.op("Reshape", [x, g.const(np.array([-1, h, w, c], np.int64))])
            x, shape = g.op("Transpose", [x], perm=[0, 3, 1, 2]), ("map", c, h, w)
        elif isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            x, shape = _conv(g, layer, x, shape)
        elif isinstance(layer, layers.Activation):
            x = g.act(x, _activation(layer))
        else:
            raise Unsupported(f"layer {layer.name!r} ({type(layer).__name__})")
        i += 1
    return x, shape


def _conv(g: _Graph, layer, x: str, shape: tuple) -> tuple[str, tuple]:
    if shape[0] not in ("map", "poly"):
        raise Unsupported(f"layer {layer.name!r}: convolution of a vector")
    if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) or \
            getattr(layer, "groups", 1) != 1 or layer.padding not in ("same", "valid"):
        raise Unsupported(f"layer {layer.name!r}: only channels-last, undilated, ungrouped, same/valid convolutions")
    kernel = layer.kernel.numpy()
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(layer.filters, np.float32)
    if isinstance(layer, layers.Conv2DTranspose) and g.phases:
        done = _polyphase(g, layer, x, shape, kernel, bias)
        if done is not None:
            return done
    x, shape = _materialise(g, x, shape)
    _, _, h, w = shape
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    if isinstance(layer, layers.Conv2DTranspose):
        if layer.output_padding is not None or kh < sh or kw < sw:
            raise Unsupported(f"layer {layer.name!r}: transposed convolution with output padding or kernel < stride")
        # Keras: kernel [kh, kw, out, in]; ONNX: [in, out, kh, kw]. 'same' crops the full output as the matching
        # forward convolution pads its input: (k - s) // 2 before, the rest after.
        crop = [(kh - sh) // 2, (kw - sw) // 2, kh - sh - (kh - sh) // 2, kw - sw - (kw - sw) // 2] \
            if layer.padding == "same" else [0, 0, 0, 0]
        y = g.op("ConvTranspose", [x, g.const(kernel.transpose(3, 2, 0, 1)), g.const(bias)],
                 kernel_shape=[kh, kw], strides=[sh, sw], pads=crop)
        out_h = h * sh if layer.padding == "same" else (h - 1) * sh + kh
        out_w = w * sw if layer.padding == "same" else (w - 1) * sw + kw
    else:
        (ph0, ph1), (pw0, pw1) = (_same_pads(h, kh, sh), _same_pads(w, kw, sw)) if layer.padding == "same" \
            else ((0, 0), (0, 0))
        y = g.op("Conv", [x, g.const(kernel.transpose(3, 2, 0, 1)), g.const(bias)],
                 kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph0, pw0, ph1, pw1])
        out_h, out_w = (h + ph0 + ph1 - kh) // sh + 1, (w + pw0 + pw1 - kw) // sw + 1
    return g.act(y, _activation(layer)), ("map", layer.filters, out_h, out_w)


def _poly_taps(k: int, s: int, crop: int, p: int, e: int) -> list[tuple[int, int, int]]:
    """One axis of a transposed convolution (kernel k, stride s, full output cropped by `crop` at the start:
    tap t of input row r lands on row s * r + t - crop) whose input rows are held in p phases (row p * n + a is
    row n of phase a) and whose output rows are wanted in p * s phases: the (tap, input phase, offset in n)
    triples that reach output phase e."""
    out = []
    for t in range(k):
        if (e + crop - t) % s == 0:
            u = (e + crop - t) // s
            out.append((t, u % p, u // p))
    return out


def _polyphase(g: _Graph, layer, x: str, shape: tuple, kernel: np.ndarray, bias: np.ndarray):
    """A 'same' transposed convolution with stride s as ordinary convolutions on its input's grid, the output
    held in s x s phases (all channels of phase (0, 0), then of (0, 1), ...), so that nothing multiplies the
    zeros a transposed convolution inserts and no layer interleaves rows on the way. A plain map goes to s x s
    phases by one convolution per phase with only the taps that reach it; a map already in p x p phases goes
    to ps x ps phases by one convolution. The same linear map as ConvTranspose. Per chunk of 64 on one core
    (ONNX Runtime's profiler, this machine): the decoder's first layer as phases 170 us against 331 us as
    ConvTranspose + Relu; its second layer, on the phases, 159 us with the final DepthToSpace, against 287 us
    for interleaving first (ONNX Runtime's DepthToSpace is slow on the large map) and ConvTranspose. None
    when the layer has another shape, or is a plain map's layer with fewer than `MIN_PHASE_FILTERS` filters."""
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    if layer.padding != "same" or layer.output_padding is not None or sh != sw or kh != kw or kh < sh:
        return None
    p = shape[1] if shape[0] == "poly" else 1
    if p == 1 and layer.filters < MIN_PHASE_FILTERS:
        return None
    crop, big = (kh - sh) // 2, p * sh
    c_in, c_out = kernel.shape[3], layer.filters
    taps = [_poly_taps(kh, sh, crop, p, e) for e in range(big)]
    kind = _activation(layer)
    _, _, _, h, w = shape if shape[0] == "poly" else ("poly", 1) + shape[1:]

    def conv(pairs: list[tuple[int, int]]) -> str:
        """pairs: (output phase index in `big` x `big`, its slot in this conv's output channels)."""
        dy = [d for e, _ in pairs for _, _, d in taps[e // big]]
        dx = [d for e, _ in pairs for _, _, d in taps[e % big]]
        (y0, y1), (x0, x1) = (min(dy), max(dy)), (min(dx), max(dx))
        if y0 > 0 or y1 < 0 or x0 > 0 or x1 < 0:
            raise Unsupported(f"layer {layer.name!r}: phase offsets outside the input")
        weights = np.zeros((len(pairs) * c_out, p * p * c_in, y1 - y0 + 1, x1 - x0 + 1), np.float32)
        for e, slot in pairs:
            for t_y, a_y, d_y in taps[e // big]:
                for t_x, a_x, d_x in taps[e % big]:
                    a = a_y * p + a_x
                    weights[slot * c_out:(slot + 1) * c_out, a * c_in:(a + 1) * c_in, d_y - y0, d_x - x0] += \
                        kernel[t_y, t_x]
        y = g.op("Conv", [x, g.const(weights), g.const(np.tile(bias, len(pairs)))],
                 kernel_shape=list(weights.shape[2:]), pads=[-y0, -x0, y1, x1])
        return g.act(y, kind)

    phases = range(big * big)
    if p == 1:
        y = g.op("Concat", [conv([(e, 0)]) for e in phases], axis=1)
    else:
        y = conv([(e, e) for e in phases])
    return y, ("poly", big, c_out, h, w)


def _materialise(g: _Graph, x: str, shape: tuple) -> tuple[str, tuple]:
    """A map held in phases as the plain map (DepthToSpace); anything else unchanged."""
    if shape[0] != "poly":
        return x, shape
    _, p, c, h, w = shape
    return g.op("DepthToSpace", [x], blocksize=p, mode="DCR"), ("map", c, h * p, w * p)


def to_onnx(models: Sequence[tf.keras.Model], phases: bool = True) -> tuple[bytes, tuple[int, ...]]:
    """The chained models as a serialised ONNX model (input "x" and output "y" in Keras' layouts) and the
    output's shape per row. `phases=False` keeps transposed convolutions as ConvTranspose."""
    import onnx
    from onnx import TensorProto, helper
    in_shape = tuple(models[0].input_shape[1:])
    g = _Graph(phases)
    if len(in_shape) == 1:
        x, shape = "x", ("flat", in_shape[0])
    elif len(in_shape) == 3:
        x, shape = g.op("Transpose", ["x"], perm=[0, 3, 1, 2]), ("map", in_shape[2], in_shape[0], in_shape[1])
    else:
        raise Unsupported(f"input shape {in_shape}")
    for model in models:
        x, shape = _emit(g, chain(model), x, shape)
    x, shape = _materialise(g, x, shape)
    if shape[0] == "map":
        _, c, h, w = shape
        x, out_shape = g.op("Transpose", [x], perm=[0, 2, 3, 1]), (h, w, c)
    elif shape[0] == "flat":
        out_shape = (shape[1],)
    else:
        raise Unsupported("a network ending in Flatten")
    g.nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(g.nodes, "mnist_etc_program", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, *out_shape])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mnist_etc")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), out_shape


class OnnxProgram:
    """`OnnxProgram([decoder, target])(codes) -> logits`: the chained networks, run by ONNX Runtime in chunks of
    `chunk` rows on every core. The program holds a copy of the weights as they were when it was built. Raises
    `Unsupported` when a layer cannot be converted or the program's output differs from TensorFlow's on a
    probe batch."""

    def __init__(self, models: Sequence[tf.keras.Model], chunk: int = CHUNK, phases: bool = True):
        import onnxruntime as ort
        graph, self.out_shape = to_onnx(models, phases)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1   # one core per call; cores via chunks
        opts.log_severity_level = 3
        self.chunk = chunk
        try:
            # ONNX Runtime allows concurrent run() calls on one session: one session serves every core.
            self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
            self._check(models)
        except Unsupported:
            raise
        except Exception as e:   # a graph ONNX Runtime refuses is a network this converter does not handle
            raise Unsupported(f"ONNX Runtime refused the program: {e}") from e

    def _check(self, models: Sequence[tf.keras.Model]) -> None:
        in_shape = tuple(models[0].input_shape[1:])
        rng = np.random.default_rng(0)
        probe = (rng.standard_normal((8, *in_shape)) if len(in_shape) == 1 else rng.random((8, *in_shape)))
        probe = probe.astype(np.float32)
        ref = probe
        for model in models:
            ref = model(ref, training=False)
        ref = np.asarray(ref)
        got = self(probe)
        if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(ref).max())):
            raise Unsupported("the ONNX program disagrees with TensorFlow on a probe batch")

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": x})[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        n = len(x)
        if n <= self.chunk:
            return self._run(x)
        out = np.empty((n, *self.out_shape), np.float32)
        starts = range(0, n, self.chunk)
        parts = _pool().map(lambda s: self._run(x[s: s + self.chunk]), starts)
        for start, part in zip(starts, parts):
            out[start: start + len(part)] = part
        return out
