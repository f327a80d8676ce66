"""The typed Triton model configuration (`config.pbtxt`) for the digit classifier, one home for defaults.

`TritonModelConfig` holds what a user or a benchmark tunes (batching, queue delay, instances); the rest
(tensor names, shapes, backend) follows from the model. It renders to the exact protobuf Triton reads
(`tritonclient.grpc.model_config_pb2.ModelConfig`), so a config that renders is one Triton can parse:

    >>> cfg = TritonModelConfig(max_batch_size=64, instance_count=2, preferred_batch_size=(8, 16))
    >>> text = to_pbtxt("mnist_etc", PYTHON, cfg)          # config.pbtxt
    >>> override = to_json("mnist_etc", PYTHON, cfg)       # client.load_model(name, config=override)
    >>> TritonModelConfig.from_proto(parse_pbtxt(text)) == cfg
    True
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as pb

from mnist_etc.config import from_dict
from mnist_etc.errors import UserError
from mnist_etc.tensor_spec import IMAGE_SHAPE, INPUT_NAME, N_CLASSES, OUTPUT_NAME

PYTHON = "python"            # model.py running ONNX Runtime: the pip-shipped tritonserver has this backend
ONNXRUNTIME = "onnxruntime"  # platform onnxruntime_onnx: official Triton containers, CPU or GPU
BACKENDS = (PYTHON, ONNXRUNTIME)
KINDS = ("KIND_CPU", "KIND_GPU")
VERSION_POLICIES = ("latest", "all")


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


def _int_in(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        accepted = f">= {low}" if high is None else f"in {low}..{high}"
        raise UserError(f"{name} must be an integer {accepted}, got {value!r}.")


@dataclass(frozen=True)
class TritonModelConfig:
    """What `config.pbtxt` sets for the classifier; validated on construction."""

    max_batch_size: int = _help("largest batch Triton may form or accept", default=64)
    dynamic_batching: bool = _help("let Triton merge concurrent requests into batches", default=True)
    max_queue_delay_microseconds: int = _help("how long a request may wait for others to form a batch",
                                              default=500)
    preferred_batch_size: tuple[int, ...] = _help("batch sizes the dynamic batcher aims for (each <= "
                                                  "max_batch_size); empty = as large as possible", default=())
    preserve_ordering: bool = _help("return responses in request order", default=False)
    instance_count: int = _help("model instances (parallel executions)", default=1)
    instance_kind: str = _help("KIND_CPU or KIND_GPU", default="KIND_CPU")
    gpus: tuple[int, ...] = _help("GPU ids for KIND_GPU; empty = every GPU", default=())
    intra_op_threads: int = _help("ONNX Runtime threads per instance; 0 = its default (all cores)", default=0)
    version_policy: str = _help("'latest' serves the newest latest_versions versions, 'all' serves every one",
                                default="latest")
    latest_versions: int = _help("how many of the newest versions 'latest' serves", default=1)

    def __post_init__(self) -> None:
        # YAML and JSON give lists; keep tuples so the config stays hashable and compares equal.
        for name in ("preferred_batch_size", "gpus"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
            else:
                raise UserError(f"{name} must be a list of integers, got {value!r}.")
        _int_in("max_batch_size", self.max_batch_size, 1)
        for name in ("dynamic_batching", "preserve_ordering"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        _int_in("max_queue_delay_microseconds", self.max_queue_delay_microseconds, 0)
        for size in self.preferred_batch_size:
            _int_in("each preferred_batch_size", size, 1, self.max_batch_size)
        if len(set(self.preferred_batch_size)) != len(self.preferred_batch_size):
            raise UserError(f"preferred_batch_size must not repeat a size, got {list(self.preferred_batch_size)}.")
        if not self.dynamic_batching and (self.preferred_batch_size or self.preserve_ordering):
            raise UserError("preferred_batch_size and preserve_ordering need dynamic_batching: true; "
                            "enable it or drop them.")
        _int_in("instance_count", self.instance_count, 1)
        if self.instance_kind not in KINDS:
            raise UserError(f"instance_kind must be one of {', '.join(KINDS)}, got {self.instance_kind!r}.")
        for gpu in self.gpus:
            _int_in("each gpu id", gpu, 0)
        if self.gpus and self.instance_kind != "KIND_GPU":
            raise UserError(f"gpus {list(self.gpus)} need instance_kind KIND_GPU, got {self.instance_kind}.")
        _int_in("intra_op_threads", self.intra_op_threads, 0)
        if self.version_policy not in VERSION_POLICIES:
            raise UserError(f"version_policy must be 'latest' or 'all', got {self.version_policy!r}.")
        _int_in("latest_versions", self.latest_versions, 1)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "TritonModelConfig":
        """From YAML/JSON, rejecting unknown keys with one sentence."""
        return from_dict(cls, dict(values))

    def replace(self, **changes: Any) -> "TritonModelConfig":
        return dataclasses.replace(self, **changes)

    def normalized(self) -> "TritonModelConfig":
        """As Triton completes it on load: with dynamic batching and no preferred sizes it prefers
        max_batch_size; without dynamic batching, queue delay, preferred sizes and ordering do not exist.
        Compare normalized forms to check that a loaded config is the one asked for."""
        if not self.dynamic_batching:
            return self.replace(max_queue_delay_microseconds=0, preferred_batch_size=(), preserve_ordering=False)
        if not self.preferred_batch_size:
            return self.replace(preferred_batch_size=(self.max_batch_size,))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_proto(cls, mc: pb.ModelConfig) -> "TritonModelConfig":
        """Read back what Triton loaded (e.g. `client.get_model_config(name).config`) as the typed config."""
        group = mc.instance_group[0] if mc.instance_group else None
        db = mc.dynamic_batching
        policy = mc.version_policy.WhichOneof("policy_choice") or "latest"
        params = mc.parameters
        threads = params["intra_op_thread_count"].string_value if "intra_op_thread_count" in params else "0"
        return cls(
            max_batch_size=mc.max_batch_size,
            dynamic_batching=mc.HasField("dynamic_batching"),
            max_queue_delay_microseconds=int(db.max_queue_delay_microseconds),
            preferred_batch_size=tuple(int(s) for s in db.preferred_batch_size),
            preserve_ordering=bool(db.preserve_ordering),
            instance_count=group.count if group else 1,
            instance_kind=pb.ModelInstanceGroup.Kind.Name(group.kind) if group else "KIND_CPU",
            gpus=tuple(group.gpus) if group else (),
            intra_op_threads=int(threads or 0),
            version_policy="all" if policy == "all" else "latest",
            latest_versions=(mc.version_policy.latest.num_versions or 1) if policy == "latest" else 1,
        )


def model_config_proto(name: str, backend: str, cfg: TritonModelConfig) -> pb.ModelConfig:
    """The full ModelConfig of the classifier served under `name` by `backend`."""
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    mc = pb.ModelConfig(name=name, max_batch_size=cfg.max_batch_size)
    if backend == PYTHON:
        mc.backend = PYTHON
    else:
        mc.platform = "onnxruntime_onnx"
    mc.input.add(name=INPUT_NAME, data_type=pb.TYPE_FP32, dims=list(IMAGE_SHAPE))
    mc.output.add(name=OUTPUT_NAME, data_type=pb.TYPE_FP32, dims=[N_CLASSES])
    mc.instance_group.add(count=cfg.instance_count, kind=pb.ModelInstanceGroup.Kind.Value(cfg.instance_kind),
                          gpus=list(cfg.gpus))
    if cfg.dynamic_batching:
        mc.dynamic_batching.max_queue_delay_microseconds = cfg.max_queue_delay_microseconds
        mc.dynamic_batching.preferred_batch_size.extend(cfg.preferred_batch_size)
        mc.dynamic_batching.preserve_ordering = cfg.preserve_ordering
    if cfg.version_policy == "all":
        mc.version_policy.all.SetInParent()
    else:
        mc.version_policy.latest.num_versions = cfg.latest_versions
    if cfg.intra_op_threads:
        # The onnxruntime backend's parameter name; our model.py reads the same one.
        mc.parameters["intra_op_thread_count"].string_value = str(cfg.intra_op_threads)
    return mc


def to_pbtxt(name: str, backend: str, cfg: TritonModelConfig) -> str:
    header = ("# Generated by mnist-etc from its typed TritonModelConfig; regenerate rather than edit.\n"
              f"# {cfg.to_dict()}\n")
    return header + text_format.MessageToString(model_config_proto(name, backend, cfg))


def to_json(name: str, backend: str, cfg: TritonModelConfig) -> str:
    """The config as the JSON that Triton's model-load API takes as an override (explicit model control)."""
    return json_format.MessageToJson(model_config_proto(name, backend, cfg), preserving_proto_field_name=True)


def parse_pbtxt(text: str) -> pb.ModelConfig:
    """Parse config.pbtxt with the protobuf schema Triton uses; a bad file gets one sentence."""
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise UserError(f"config.pbtxt does not parse as a Triton ModelConfig ({exc}).") from None
