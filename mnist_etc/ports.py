"""Local TCP ports for the servers the project starts (Triton, Prefect, optuna-dashboard), all on 127.0.0.1."""
from __future__ import annotations

import socket

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    """No one listens on host:port. SO_REUSEADDR, as the servers use it: connections of a server stopped a
    moment ago (TIME_WAIT) do not count, a listening socket does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, host: str = HOST) -> list[int]:
    """n distinct ports free right now (the OS may hand them out again later; start-up retries then)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
