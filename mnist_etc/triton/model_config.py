"""The typed Triton model configuration (`config.pbtxt`) for the digit classifier, one home for defaults.

`TritonModelConfig` holds what a user or a benchmark tunes (batching, queue delay, instances); the rest
(tensor names, shapes, backend) follows from the model. It renders to the exact protobuf Triton reads
(`tritonclient.grpc.model_config_pb2.ModelConfig`), so a config that renders is one Triton can parse:

    >>> cfg = TritonModelConfig(max_batch_size=64, instance_count=2, preferred_batch_size=(8, 16))
    >>> text = to_pbtxt("mnist_etc", PYTHON, cfg)          # config.pbtxt
    >>> override = to_json("mnist_etc", PYTHON, cfg)       # client.load_model(name, config=override)
    >>> TritonModelConfig.from_proto(parse_pbtxt(text)) == cfg
    True

A `Settings` model: each field's type and bounds are its validation (one sentence per mistake); the rules
across fields are the three named validators below.
"""
from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from google.protobuf import json_format, text_format
from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, model_validator

from mnist_etc.config import Settings
from mnist_etc.errors import UserError
from mnist_etc.tensor_spec import IMAGE_SHAPE, INPUT_NAME, N_CLASSES, OUTPUT_NAME

if typing.TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb

PYTHON = "python"            # model.py running ONNX Runtime: the pip-shipped tritonserver has this backend
ONNXRUNTIME = "onnxruntime"  # platform onnxruntime_onnx: official Triton containers, CPU or GPU
BACKENDS = (PYTHON, ONNXRUNTIME)
Kind = Literal["KIND_CPU", "KIND_GPU"]
VersionPolicy = Literal["latest", "all"]
KINDS: tuple[str, ...] = typing.get_args(Kind)
VERSION_POLICIES: tuple[str, ...] = typing.get_args(VersionPolicy)


def as_tuple(value: Any) -> Any:
    """YAML and JSON give lists; tuples keep a config hashable (strict mode takes lists for no tuple)."""
    return tuple(value) if isinstance(value, list) else value


def no_repeats(value: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
    if len(set(value)) != len(value):
        shown = [list(v) if isinstance(v, tuple) else v for v in value]
        raise ValueError(f"{info.field_name} must not repeat a value, got {shown}.")
    return value


BatchSize = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
BatchSizes = Annotated[tuple[BatchSize, ...], BeforeValidator(as_tuple), AfterValidator(no_repeats)]
GpuIds = Annotated[tuple[Count, ...], BeforeValidator(as_tuple), AfterValidator(no_repeats)]


class TritonModelConfig(Settings):
    """What `config.pbtxt` sets for the classifier; validated on construction."""

    max_batch_size: BatchSize = Field(64, description="largest batch Triton may form or accept")
    dynamic_batching: bool = Field(True, description="let Triton merge concurrent requests into batches")
    max_queue_delay_microseconds: Count = Field(500, description=(
        "how long a request may wait for others to form a batch, in microseconds"))
    preferred_batch_size: BatchSizes = Field((), description=(
        "batch sizes the dynamic batcher aims for (each <= max_batch_size); empty = as large as possible"))
    preserve_ordering: bool = Field(False, description="return responses in request order")
    instance_count: BatchSize = Field(1, description="model instances (parallel executions)")
    instance_kind: Kind = Field("KIND_CPU", description="KIND_CPU or KIND_GPU")
    gpus: GpuIds = Field((), description="GPU ids for KIND_GPU; empty = every GPU")
    intra_op_threads: Count = Field(1, description=(
        "ONNX Runtime threads per instance; 0 = its default (one per core). 1 by default: a batch of <= 64 digits "
        "gains nothing from more, and each thread competes with Triton's own (benchmarks/bench_efficiency.py)"))
    version_policy: VersionPolicy = Field("latest", description=(
        "'latest' serves the newest latest_versions versions, 'all' serves every one"))
    latest_versions: BatchSize = Field(1, description="how many of the newest versions 'latest' serves")

    @model_validator(mode="after")
    def _preferred_sizes_fit_the_batch(self) -> "TritonModelConfig":
        for size in self.preferred_batch_size:
            if size > self.max_batch_size:
                raise ValueError(f"each preferred_batch_size must be an integer in 1..{self.max_batch_size}, got "
                                 f"{size}; raise max_batch_size or drop that size.")
        return self

    @model_validator(mode="after")
    def _batcher_settings_need_dynamic_batching(self) -> "TritonModelConfig":
        if not self.dynamic_batching and (self.preferred_batch_size or self.preserve_ordering):
            raise ValueError("preferred_batch_size and preserve_ordering need dynamic_batching: true; "
                             "enable it or drop them.")
        return self

    @model_validator(mode="after")
    def _gpus_need_kind_gpu(self) -> "TritonModelConfig":
        if self.gpus and self.instance_kind != "KIND_GPU":
            raise ValueError(f"gpus {list(self.gpus)} need instance_kind KIND_GPU, got {self.instance_kind}.")
        return self

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "TritonModelConfig":
        """From YAML/JSON, rejecting unknown keys with one sentence."""
        return cls.parse(dict(values))

    def normalized(self) -> "TritonModelConfig":
        """As Triton completes it on load: with dynamic batching and no preferred sizes it prefers
        max_batch_size; without dynamic batching, queue delay, preferred sizes and ordering do not exist.
        Compare normalized forms to check that a loaded config is the one asked for."""
        if not self.dynamic_batching:
            return self.replace(max_queue_delay_microseconds=0, preferred_batch_size=(), preserve_ordering=False)
        if not self.preferred_batch_size:
            return self.replace(preferred_batch_size=(self.max_batch_size,))
        return self

    @classmethod
    def from_proto(cls, mc: pb.ModelConfig) -> "TritonModelConfig":
        """Read back what Triton loaded (e.g. `client.get_model_config(name).config`) as the typed config."""
        from tritonclient.grpc import model_config_pb2 as pb   # tritonclient.grpc takes 0.15 s to import

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
    from tritonclient.grpc import model_config_pb2 as pb

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


class PbtxtError(UserError):
    """Text that Triton's ModelConfig schema cannot parse; `detail` is the parser's words (line:column: what)."""

    def __init__(self, detail: str):
        super().__init__(f"config.pbtxt does not parse as a Triton ModelConfig ({detail}).")
        self.detail = detail


def parse_pbtxt(text: str) -> pb.ModelConfig:
    """Parse config.pbtxt with the protobuf schema Triton uses; a bad file gets one sentence."""
    from tritonclient.grpc import model_config_pb2 as pb

    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise PbtxtError(str(exc)) from None


def served_config_problem(mc: pb.ModelConfig, name: str) -> str | None:
    """What keeps a parsed config from serving the classifier as model `name`, or None when nothing does.

    Parsing proves little: a file cut short (a full disk, a killed copy) still parses when the cut falls
    between fields, having lost its backend or a tensor, and Triton then loads something else or refuses
    with a message about backends."""
    from tritonclient.grpc import model_config_pb2 as pb

    if mc.name and mc.name != name:
        return f"names model {mc.name!r}, not {name!r} (its directory)"
    if mc.backend not in BACKENDS and mc.platform != "onnxruntime_onnx":
        return 'sets neither backend "python" nor platform "onnxruntime_onnx"'
    if mc.max_batch_size < 1:
        return f"sets max_batch_size {mc.max_batch_size}, not an integer >= 1"
    for kind, tensors, tensor, dims in (("input", mc.input, INPUT_NAME, IMAGE_SHAPE),
                                        ("output", mc.output, OUTPUT_NAME, (N_CLASSES,))):
        if [(t.name, tuple(t.dims), t.data_type) for t in tensors] != [(tensor, tuple(dims), pb.TYPE_FP32)]:
            return f"does not declare the classifier's one {kind} {tensor!r} (FP32, dims {list(dims)})"
    return None
