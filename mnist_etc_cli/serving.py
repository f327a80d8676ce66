"""Verbs `export`, `serve` and `infer`: ONNX export into the Triton model repository, the embedded Triton
server, and batch inference of the test split through it."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from mnist_etc.errors import UserError
from mnist_etc.tensor_spec import DEFAULT_OPSET
from mnist_etc.triton.model_config import BACKENDS
from mnist_etc.triton.server import ServerConfig
from mnist_etc.triton.repository import DEFAULT_MODEL_NAME as DEFAULT_MODEL, DEFAULT_REPOSITORY as REPOSITORY
from mnist_etc_cli.options import OptionSet, add_model_source_options, add_settings_options

INFERENCE_DIR = Path("artifacts/inference")
SERVE_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}   # Triton's own defaults, so its clients find it


# TritonModelConfig's settings an export sets from the command line (the rest: the benchmark's adopted config).
TRITON_FIELDS = ("max_batch_size", "max_queue_delay_microseconds", "preferred_batch_size", "dynamic_batching",
                 "instance_count", "instance_kind", "intra_op_threads", "version_policy")
TRITON_FLAGS = {"max_queue_delay_microseconds": "--max-queue-delay-us"}


def add_triton_config_options(parser: argparse.ArgumentParser) -> OptionSet:
    """Options of `TritonModelConfig` (config.pbtxt); only those given override its defaults."""
    from mnist_etc.triton.model_config import TritonModelConfig

    return add_settings_options(parser, TritonModelConfig, fields=TRITON_FIELDS, flags=TRITON_FLAGS,
                                title="Triton model config (config.pbtxt)")


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="export a trained model to ONNX and add it as a new version to the Triton "
                                      "model repository", description=(
        "Convert the full image -> logits model to ONNX (tf2onnx, opset 17, dynamic batch), check it against "
        "TensorFlow on 256 test images (max |diff| <= 1e-4, identical classes; otherwise nothing is written), "
        "then publish it as the next version of two served models in the repository: NAME (Python backend "
        "running ONNX Runtime, for the embedded server) and NAME_onnx (platform onnxruntime_onnx, for the "
        "official Triton containers and GPUs). Source: the newest sweep winner by default."))
    add_model_source_options(e)
    e.add_argument("--name", default=DEFAULT_MODEL, help="served model name (default %(default)s)")
    e.add_argument("--repository", type=Path, default=REPOSITORY, help="model repository (default %(default)s)")
    e.add_argument("--backends", default=",".join(BACKENDS), metavar="LIST",
                   help="which served models to write: python, onnxruntime or both (default %(default)s)")
    e.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    e.add_argument("--no-mlflow-log", action="store_true",
                   help="do not attach the ONNX file to the source's MLflow training run")
    triton = add_triton_config_options(e)
    e.set_defaults(func=cmd_export, settings={"triton": triton})

    s = sub.add_parser("serve", help="run the embedded Triton server on the model repository until Ctrl-C",
                       description=(
        "Start the tritonserver binary shipped in the nvidia-pytriton wheel on the model repository, bound to "
        "127.0.0.1, and keep it running until Ctrl-C; the log goes to artifacts/triton/logs/. By default it "
        "loads every Python-backend model (the pip-shipped server has no onnxruntime backend). With --url, "
        "check an external Triton server instead and list its models."))
    s.add_argument("--repository", type=Path, default=REPOSITORY, help="model repository (default %(default)s)")
    for name, port in SERVE_PORTS.items():
        s.add_argument(f"--{name}-port", type=int, default=port, help=f"{name} port, 0 = a free one (default %(default)s)")
    s.add_argument("--model-control-mode", choices=["explicit", "none"], default="explicit",
                   help="explicit: load the models named by --load-model (every Python-backend model when none is "
                        "named) and accept load/unload requests; none: load every model in the repository "
                        "(default %(default)s)")
    s.add_argument("--load-model", action="append", metavar="NAME", help="model to load at start (repeatable)")
    s.add_argument("--timeout", type=float, default=ServerConfig.startup_timeout,
                   help="seconds to wait for readiness (default %(default)s)")
    s.add_argument("--url", help="HOST:GRPC_PORT of an external Triton server to check instead")
    s.set_defaults(func=cmd_serve)

    i = sub.add_parser("infer", help="send the test split to Triton over gRPC and write predictions to CSV",
                       description=(
        "Send the served model's test split (from its export record) to Triton over gRPC in batches and write "
        "artifacts/inference/<model>_v<version>.csv (index, label, prediction, ten probabilities). Fails when "
        "the accuracy differs from the in-process accuracy recorded at export. Without --url, an embedded "
        "server is started for the run."))
    i.add_argument("--model", dest="served", default=DEFAULT_MODEL, metavar="NAME",
                   help="served model name (default %(default)s)")
    i.add_argument("--version", type=int, help="model version (default: the newest served)")
    i.add_argument("--url", help="HOST:GRPC_PORT of a running Triton server (default: start the embedded one)")
    i.add_argument("--repository", type=Path, default=REPOSITORY, help="model repository (default %(default)s)")
    i.add_argument("--batch-size", type=int, help="images per request (default: the model's max_batch_size)")
    i.add_argument("--out-dir", type=Path, default=INFERENCE_DIR, help="where the CSV goes (default %(default)s)")
    i.set_defaults(func=cmd_infer)


def cmd_export(args: argparse.Namespace) -> int:
    from mnist_etc.triton.model_config import BACKENDS

    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if not backends or set(backends) - set(BACKENDS):
        raise UserError(f"--backends must list python and/or onnxruntime, got {args.backends!r}.")
    triton_cfg = args.settings["triton"].build(args)   # validated before any work starts
    from mnist_etc.tensor_spec import check_opset

    check_opset(args.opset)
    from mnist_etc.export_source import check_source, resolve_source
    from mnist_etc.triton.repository import validate_model_name

    validate_model_name(args.name)
    check_source(args.model, args.winner, args.mlflow_model, args.mlflow_tracking_uri)   # nothing downloaded yet
    from mnist_etc.export import export_to_repository
    from mnist_etc.model_store import load_model
    from mnist_etc.tracking.export import log_export_to_mlflow

    source = resolve_source(args.model, args.winner, args.mlflow_model, args.mlflow_tracking_uri)
    print(f"source: {source.model_dir} ({source.info.get('kind')})")
    stored = load_model(source.model_dir)
    result, published = export_to_repository(stored, args.repository, args.name, triton_cfg, backends,
                                             source.info, opset=args.opset)
    rec = result.record
    print(f"parity: max |ORT - TF| = {rec['parity']['max_abs_diff']:.2e} on {rec['parity']['n_images']} images, "
          f"classes identical; test accuracy TF {rec['test_accuracy']['tensorflow']:.4f}, "
          f"ORT {rec['test_accuracy']['onnxruntime']:.4f}; export took {result.seconds:.1f} s")
    for backend, model_dir in published.model_dirs.items():
        print(f"published {model_dir}/{published.version} ({backend} backend)")
    if source.mlflow_run_id and not args.no_mlflow_log:
        uri = log_export_to_mlflow(result.directory, source.mlflow_run_id,
                                   args.mlflow_tracking_uri or source.tracking_uri)
        print(f"logged to MLflow: {uri}")
    print(f"serve it: mnist-etc serve --repository {args.repository}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.url:
        return _check_external(args.url)
    from mnist_etc.triton.repository import list_models
    from mnist_etc.triton.server import ServerConfig, TritonServer

    load = tuple(args.load_model or ())
    if args.model_control_mode == "explicit" and not load:
        load = tuple(name for name, backend in list_models(args.repository).items() if backend == "python")
        if not load:
            raise UserError(f"no Python-backend model in {str(args.repository)!r}; run 'mnist-etc export' first.")
    cfg = ServerConfig(args.repository, args.http_port, args.grpc_port, args.metrics_port,
                       args.model_control_mode, load, startup_timeout=args.timeout)
    # SIGTERM (e.g. from a process manager) takes the same clean path as Ctrl-C; SIGINT is set explicitly
    # because a shell starting us in the background leaves it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    with TritonServer(cfg) as server:
        print(f"Triton ready in {server.startup_seconds:.1f} s: gRPC {server.grpc_url}, HTTP {server.http_url}, "
              f"metrics {server.metrics_url}")
        print(f"models: {', '.join(load) if load else 'all in ' + str(args.repository)}; log: {server.log_path}")
        print(f"try: mnist-etc infer --url {server.grpc_url} --model {load[0] if load else DEFAULT_MODEL}")
        print("Ctrl-C stops the server.", flush=True)
        try:
            while server.running():
                server.proc.wait()
        except KeyboardInterrupt:
            print("stopping Triton...", file=sys.stderr)
            return 0
        raise UserError(f"tritonserver exited on its own; last lines of {server.log_path}:\n{server.log_tail()}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _check_external(url: str) -> int:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        client = grpcclient.InferenceServerClient(url)
        ready = client.is_server_ready(client_timeout=10)
        models = client.get_model_repository_index().models
    except (InferenceServerException, ValueError) as exc:
        raise UserError(f"cannot reach a Triton server at {url!r} over gRPC ({exc}).") from None
    print(f"Triton at {url}: {'ready' if ready else 'NOT ready'}")
    for m in models:
        print(f"  {m.name} v{m.version or '-'}: {m.state} {m.reason}".rstrip())
    return 0 if ready else 1


def cmd_infer(args: argparse.Namespace) -> int:
    from mnist_etc.inference import infer_test_split

    r = infer_test_split(args.served, args.version, args.url, args.repository, args.out_dir, args.batch_size)
    print(f"{r.model} v{r.version}: {r.n_images} test images in {r.seconds:.2f} s "
          f"({r.n_images / r.seconds:.0f} images/s); wrote {r.csv_path}")
    if r.in_process_accuracy is None:
        print(f"accuracy {r.accuracy:.4f} (no export record to compare with)")
        return 0
    same = r.matches_in_process
    print(f"accuracy over Triton {r.accuracy:.4f}, in-process (TensorFlow, at export) {r.in_process_accuracy:.4f}: "
          f"{'equal' if same else 'DIFFERENT'}")
    if not same:
        print("mnist-etc infer: error: served predictions differ from the in-process model.", file=sys.stderr)
        return 1
    return 0

