"""`mnist-etc`: train, privately train, attack, sweep, export, serve, benchmark and audit digit classifiers.

Each verb lives in its own module of this package with a `register(subparsers)` function that adds its
parser and sets `func`. Heavy imports (TensorFlow, Prefect) happen inside the verbs, so `--help` is quick.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from mnist_etc.errors import DiskFull, UserError, is_disk_full

# Modules holding verbs, in the order `--help` lists them.
VERB_MODULES = [
    "mnist_etc_cli.train",
    "mnist_etc_cli.sweep",
    "mnist_etc_cli.serving",
    "mnist_etc_cli.benchmark",
    "mnist_etc_cli.pipeline",
    "mnist_etc_cli.audit",
    "mnist_etc_cli.ledger",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same orderly stop as Ctrl-C: running trials are settled, partial artifacts
    removed (the default action would kill the process between two writes and say nothing)."""


def _on_sigterm(signum, frame):
    from mnist_etc.stop_request import request_stop

    request_stop("SIGTERM")   # remembered, in case the exception below is swallowed by the code it lands in
    raise Terminated()


def _on_sigint(signum, frame):
    from mnist_etc.stop_request import request_stop

    request_stop("SIGINT")
    raise KeyboardInterrupt()


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a failed task or flow run with its traceback; for a UserError the sentence main() prints
    says it all (stack traces are for bugs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (isinstance(record.exc_info[1], UserError) or is_disk_full(record.exc_info[1])):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_prefect_tracebacks() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):   # Prefect's run loggers; Prefect need not be loaded
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTracebackForUserErrors) for f in logger.filters):
            logger.addFilter(_NoTracebackForUserErrors())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-etc",
        description="Sweep, serve and audit private MNIST classifiers: accuracy vs. how well a hill-climbing "
                    "attack reconstructs inputs from the model's scores, vs. serving speed on Triton.",
        epilog="Run 'mnist-etc VERB --help' for a verb's options. Outputs go under artifacts/.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mnist_etc.stop_request import clear_stop, stop_requested

    clear_stop()
    _quiet_prefect_tracebacks()
    previous = signal.signal(signal.SIGTERM, _on_sigterm), signal.signal(signal.SIGINT, _on_sigint)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"mnist-etc {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        print(f"mnist-etc {args.verb}: error: {DiskFull.of(exc)}", file=sys.stderr)   # the machine's, not a bug
        return 1
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated) or stop_requested() == "SIGTERM":   # one that surfaced late still is
            print(f"mnist-etc {args.verb}: terminated (SIGTERM); finished artifacts are kept, partial ones "
                  f"removed.", file=sys.stderr)
            return 143
        print(f"mnist-etc {args.verb}: interrupted; finished artifacts are kept, partial ones removed.",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


if __name__ == "__main__":
    sys.exit(main())
