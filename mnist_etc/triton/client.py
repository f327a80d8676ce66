"""gRPC client for the served classifier: batched inference with the input shape checked before sending.

    >>> client = ClassifierClient("127.0.0.1:8001", "mnist_etc")     # newest ready version
    >>> logits = client.infer(images)                                # images float32 [N, 28, 28, 1]

Every failure a user can cause (server unreachable, model or version not ready, wrong image shape, batch
size too large) is a `UserError` with one sentence; Triton's own refusals are passed on in its words. A server
that goes away mid-run (killed, crashed) is a `ServerStopped`, so a caller can tell it from a refusal.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mnist_etc.errors import UserError
from mnist_etc.tensor_spec import IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME
from mnist_etc.triton.repository import validate_model_name, validate_version


def validate_images(images: Any, origin: str = "images") -> np.ndarray:
    """float32 [N, 28, 28, 1] with N >= 1, or a UserError naming the shape received and the one expected."""
    arr = np.asarray(images)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != IMAGE_SHAPE or len(arr) == 0:
        raise UserError(f"{origin} must have shape [N, 28, 28, 1] with N >= 1 (float32 pixels in 0..1), got "
                        f"{list(arr.shape)}.")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise UserError(f"{origin} must be numeric, got dtype {arr.dtype}.")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _message(exc: Exception) -> str:
    text = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return " ".join(str(text).split())[:300]


# gRPC statuses of a server that is gone or hung (connection refused, socket closed, no answer in time), as
# opposed to one that answers with a refusal.
GONE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


class ServerStopped(UserError):
    """The server stopped answering in the middle of a run. `what` says which server and what it was doing, so
    the owner of an embedded server can say why it stopped (see `TritonServer.__exit__`)."""

    def __init__(self, what: str, reason: str, advice: str):
        super().__init__(f"{what} ({reason}); {advice}")
        self.what = what


class ClassifierClient:
    """One served model (and version) on one Triton server, over gRPC."""

    def __init__(self, url: str, model: str, version: int | None = None, timeout_s: float = 30.0):
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        self._grpc = grpcclient
        self._error = InferenceServerException
        self.url, self.model, self.timeout_s = url, validate_model_name(model), timeout_s
        try:
            self.client = grpcclient.InferenceServerClient(url)
            ready = self.client.is_server_ready(client_timeout=timeout_s)
        except (InferenceServerException, ValueError) as exc:
            raise UserError(f"cannot reach a Triton server at {url!r} over gRPC ({_message(exc)}); pass "
                            f"--url HOST:GRPC_PORT of a running server, or omit --url to start one.") from None
        if not ready:
            raise UserError(f"the Triton server at {url!r} is not ready (a model may still be loading).")
        self.version = self._resolve_version(version)
        try:
            config = self.client.get_model_config(model, str(self.version), client_timeout=timeout_s).config
        except self._error as exc:
            raise self._stopped(exc) if self._gone(exc) else UserError(
                f"Triton at {url} refused to give the config of {model!r} v{self.version}: {_message(exc)}") from None
        self.max_batch_size = int(config.max_batch_size)

    def _gone(self, exc: Exception) -> bool:
        return callable(getattr(exc, "status", None)) and exc.status() in GONE

    def _stopped(self, exc: Exception) -> ServerStopped:
        serving = f"{self.model!r}" + (f" v{self.version}" if getattr(self, "version", None) else "")
        return ServerStopped(f"the Triton server at {self.url} stopped answering while serving {serving}",
                             _message(exc), f"check that it still runs ('mnist-etc serve --url {self.url}' lists "
                                            f"its models), then retry.")

    def _resolve_version(self, version: int | None) -> int:
        try:
            meta = self.client.get_model_metadata(self.model, client_timeout=self.timeout_s)
        except self._error as exc:
            if self._gone(exc):
                raise self._stopped(exc) from None
            names = [m.name for m in self.client.get_model_repository_index().models if m.state == "READY"]
            raise UserError(f"model {self.model!r} is not ready on {self.url} ({_message(exc)}); ready models: "
                            f"{', '.join(names) or 'none'}.") from None
        ready = sorted(int(v) for v in meta.versions)
        if version is None:
            return ready[-1]
        version = validate_version(version)
        if version not in ready:
            raise UserError(f"version {version} of model {self.model!r} is not served by {self.url}; served "
                            f"versions: {', '.join(map(str, ready))} (the model's version_policy decides which).")
        return version

    def infer(self, images: Any, batch_size: int | None = None) -> np.ndarray:
        """Logits [N, 10], sent in requests of at most `batch_size` (default: the model's max_batch_size)."""
        x = validate_images(images)
        batch_size = batch_size or self.max_batch_size
        valid = isinstance(batch_size, int) and not isinstance(batch_size, bool)
        if not valid or not 1 <= batch_size <= self.max_batch_size:
            raise UserError(f"batch size must be an integer in 1..{self.max_batch_size} (the model's "
                            f"max_batch_size), got {batch_size!r}.")
        return np.concatenate([self.infer_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def infer_batch(self, batch: np.ndarray) -> np.ndarray:
        """One request, exactly as given (shape already valid): the unit perf measurements time."""
        inp = self._grpc.InferInput(INPUT_NAME, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        try:
            result = self.client.infer(self.model, [inp], model_version=str(self.version),
                                       outputs=[self._grpc.InferRequestedOutput(OUTPUT_NAME)],
                                       client_timeout=self.timeout_s)
        except self._error as exc:
            if self._gone(exc):
                raise self._stopped(exc) from None
            raise UserError(f"Triton at {self.url} refused a request to {self.model!r} v{self.version}: "
                            f"{_message(exc)}") from None
        return result.as_numpy(OUTPUT_NAME)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "ClassifierClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
