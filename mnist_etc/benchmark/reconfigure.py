"""Reconfigure a served model between points without restarting Triton, and prove the change took effect.

Triton in explicit model-control mode reloads a model with a config override sent by the client
(`load_model(name, config=json)`): the repository's config.pbtxt is untouched, and instances are swapped
in place (about 1.5 s per reload here). After the load, the config Triton actually serves is read back;
a point is measured only when it matches the one asked for.

    >>> control = ModelControl("127.0.0.1:8001", "grpc", "mnist_etc", backend="python")
    >>> loaded = control.load(TritonModelConfig(instance_count=2))   # raises LoadRefused or ConfigMismatch
"""
from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as pb

from mnist_etc.triton.model_config import BACKENDS, ONNXRUNTIME, PYTHON, TritonModelConfig, to_json

LOAD_TIMEOUT_S = 300.0


class LoadRefused(Exception):
    """Triton refused the configuration (its own words in the message)."""


class ConfigMismatch(Exception):
    """Triton loaded something other than the configuration asked for."""


def effective(cfg: TritonModelConfig) -> dict[str, Any]:
    """What decides serving behaviour, as Triton completes it on load.

    The serving-relevant fields of `TritonModelConfig.normalized()` (which applies Triton's completion
    rules); compare these forms, not the raw configs."""
    cfg = cfg.normalized()
    out = {"max_batch_size": cfg.max_batch_size, "dynamic_batching": cfg.dynamic_batching,
           "instance_count": cfg.instance_count, "instance_kind": cfg.instance_kind, "gpus": cfg.gpus,
           "intra_op_threads": cfg.intra_op_threads}
    if cfg.dynamic_batching:
        out.update(max_queue_delay_microseconds=cfg.max_queue_delay_microseconds,
                   preferred_batch_size=cfg.preferred_batch_size, preserve_ordering=cfg.preserve_ordering)
    return out


def same_serving_config(a: TritonModelConfig, b: TritonModelConfig) -> bool:
    return effective(a) == effective(b)


def describe_difference(asked: TritonModelConfig, loaded: TritonModelConfig) -> str:
    a, b = effective(asked), effective(loaded)
    diffs = [f"{k} asked {a.get(k)!r} but loaded {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(diffs)


def _message(exc: Exception) -> str:
    text = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return " ".join(str(text).split())[:400]


class ModelControl:
    """Load/read-back of one served model over the benchmark's protocol (gRPC or HTTP)."""

    def __init__(self, url: str, protocol: str, model: str, backend: str = PYTHON, version: int | None = None):
        from tritonclient.utils import InferenceServerException

        if backend not in BACKENDS:
            raise ValueError(backend)
        self.url, self.protocol, self.model, self.backend, self.version = url, protocol, model, backend, version
        self._error = InferenceServerException
        if protocol == "grpc":
            import tritonclient.grpc as grpcclient

            self.client = grpcclient.InferenceServerClient(url)
        else:
            import tritonclient.http as httpclient

            # HTTP's load_model has no per-call timeout: a load of several instances may take longer than
            # the client's default 60 s network timeout.
            self.client = httpclient.InferenceServerClient(url, network_timeout=LOAD_TIMEOUT_S)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a client to a dead server must not mask the real failure
            pass

    # -- reading ---------------------------------------------------------------------------------------
    def alive(self) -> bool:
        try:
            return bool(self.client.is_server_live())
        except Exception:  # connection refused, reset, timeout: all mean "not serving"
            return False

    def ready(self) -> bool:
        try:
            return bool(self.client.is_model_ready(self.model, self._version_str()))
        except Exception:
            return False

    def _version_str(self) -> str:
        return "" if self.version is None else str(self.version)

    def loaded_config(self) -> TritonModelConfig:
        """The configuration Triton serves for the model now (read back from the server, not the disk)."""
        if self.protocol == "grpc":
            mc = self.client.get_model_config(self.model, self._version_str(), client_timeout=30).config
        else:
            mc = json_format.ParseDict(self.client.get_model_config(self.model, self._version_str()),
                                       pb.ModelConfig(), ignore_unknown_fields=True)
        return TritonModelConfig.from_proto(mc)

    def backend_of_loaded(self) -> str:
        """python or onnxruntime, from what the server reports (an external server may run either)."""
        if self.protocol == "grpc":
            mc = self.client.get_model_config(self.model, self._version_str(), client_timeout=30).config
            platform, backend = mc.platform, mc.backend
        else:
            d = self.client.get_model_config(self.model, self._version_str())
            platform, backend = d.get("platform", ""), d.get("backend", "")
        return ONNXRUNTIME if (platform == "onnxruntime_onnx" or backend == ONNXRUNTIME) else PYTHON

    # -- changing --------------------------------------------------------------------------------------
    def load(self, cfg: TritonModelConfig) -> TritonModelConfig:
        """Load `cfg` as an override, wait for it, read it back; the loaded config, or an exception."""
        if self.version is not None and cfg.version_policy != "all":
            # TritonModelConfig's policies are 'latest N' and 'all'; a pinned older version needs 'all'.
            cfg = cfg.replace(version_policy="all")
        override = to_json(self.model, self.backend, cfg)
        try:
            if self.protocol == "grpc":
                self.client.load_model(self.model, config=override, client_timeout=LOAD_TIMEOUT_S)
            else:
                self.client.load_model(self.model, config=override)
        except self._error as exc:
            raise LoadRefused(_message(exc)) from None
        if not self.ready():
            raise LoadRefused(f"model {self.model!r} is not ready after loading the configuration")
        loaded = self.loaded_config()
        if not same_serving_config(cfg, loaded):
            raise ConfigMismatch(describe_difference(cfg, loaded))
        return loaded

    def loaded_config_json(self) -> str:
        """The full config Triton serves now, as the JSON its load API takes back as an override."""
        if self.protocol == "grpc":
            mc = self.client.get_model_config(self.model, self._version_str(), client_timeout=30).config
        else:
            mc = json_format.ParseDict(self.client.get_model_config(self.model, self._version_str()),
                                       pb.ModelConfig(), ignore_unknown_fields=True)
        return json_format.MessageToJson(mc, preserving_proto_field_name=True)

    def restore(self, config_json: str) -> bool:
        """Load a config saved with loaded_config_json() (e.g. the one served before the benchmark).

        A plain load_model(name) would not do: Triton skips the reload when the repository's files are
        unchanged, and keeps serving the last override."""
        try:
            if self.protocol == "grpc":
                self.client.load_model(self.model, config=config_json, client_timeout=LOAD_TIMEOUT_S)
            else:
                self.client.load_model(self.model, config=config_json)
            return True
        except self._error:
            return False
