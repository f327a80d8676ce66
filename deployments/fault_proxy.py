"""A small TCP proxy for tests and benchmarks: put it on the path between a client and a server to add delay, drop
connections, or cut the path for a while (this kernel has no netem and the machine no iptables).

    proxy = FaultProxy(("10.231.0.1", 0), ("127.0.0.1", 5432)).start()   # proxy.port: where clients connect
    proxy.set(delay=0.2)            # each chunk forwarded 0.2 s after it arrived, in both directions
    proxy.set(drop_every=3)         # every 3rd new connection is closed (RST) right after it is accepted
    proxy.set(cut=True)             # new connections are refused and live ones are closed; cut=False heals it
    proxy.stop()

Bounded: at most `max_connections` at a time (more are closed on arrival), each chunk at most 64 KiB, and every
thread ends with `stop()`. `peers` counts connections by client address (who used the path), `dropped` the
connections it closed on purpose.
"""
from __future__ import annotations

import collections
import json
import queue
import socket
import struct
import threading
import time

CHUNK = 65536


class FaultProxy:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int], max_connections: int = 256,
                 allow: set[str] | None = None) -> None:
        self.listen_addr, self.target = listen, target
        self.allow = allow            # client addresses let through (None: all); others are reset and counted
        self.max_connections = max_connections
        self.delay = 0.0
        self.drop_every = 0
        self.cut = False
        self.peers: collections.Counter[str] = collections.Counter()
        self.accepted = 0
        self.dropped = 0
        self.refused: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.getsockname()[1]

    @property
    def address(self) -> str:
        return f"{self.listen_addr[0]}:{self.port}"

    def start(self) -> "FaultProxy":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.listen_addr)
        s.listen(64)
        s.settimeout(0.5)
        self._server = s
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def set(self, *, delay: float | None = None, drop_every: int | None = None, cut: bool | None = None) -> None:
        victims: list[socket.socket] = []
        with self._lock:
            if delay is not None:
                self.delay = max(0.0, float(delay))
            if drop_every is not None:
                self.drop_every = max(0, int(drop_every))
            if cut is not None:
                self.cut = bool(cut)
                victims = list(self._live) if cut else []
        for sock in victims:
            _reset(sock)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            live = list(self._live)
        for sock in live:
            _reset(sock)
        if self._server:
            self._server.close()

    # ---------------------------------------------------------------------------------------------- inside

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, peer = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.peers[peer[0]] += 1
                if self.allow is not None and peer[0] not in self.allow:
                    self.refused[peer[0]] += 1
                    drop = True
                else:
                    drop = (self.cut or (self.drop_every and self.accepted % self.drop_every == 0)
                            or len(self._live) >= 2 * self.max_connections)
                    if drop:
                        self.dropped += 1
            if drop:
                _reset(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.settimeout(None)
        with self._lock:
            self._live.update((client, upstream))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        """Read from src; each chunk is written to dst `delay` seconds after it arrived (a latency, not a rate
        limit: a sender thread drains the queue)."""
        chunks: queue.Queue = queue.Queue(maxsize=1024)

        def send() -> None:
            while True:
                item = chunks.get()
                if item is None:
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while not self._stop.is_set():
                data = src.recv(CHUNK)
                if not data:
                    break
                chunks.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        chunks.put(None)
        sender.join(timeout=60)
        with self._lock:
            self._live.discard(src)
            self._live.discard(dst)
        src.close()


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped connection looks to the other end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)   # wakes a thread blocked in recv() on it
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"error: {text!r} is not HOST:PORT.")
    return host, int(port)


def main() -> int:
    """Run one proxy until SIGTERM, printing each accepted client address (the harness's record of who used the
    path): `python deployments/fault_proxy.py --listen 10.231.0.1:15432 --target 127.0.0.1:5432`."""
    import argparse
    import signal
    import sys

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True, type=_addr, help="HOST:PORT to accept on")
    ap.add_argument("--target", required=True, type=_addr, help="HOST:PORT to forward to")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds added to each chunk, both directions")
    ap.add_argument("--drop-every", type=int, default=0, help="close every Nth new connection (0: none)")
    ap.add_argument("--allow", action="append", help="a client address let through (repeatable; default: all)")
    args = ap.parse_args()
    proxy = FaultProxy(args.listen, args.target, allow=set(args.allow) if args.allow else None)
    proxy.set(delay=args.delay, drop_every=args.drop_every)
    try:
        proxy.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.listen[0]}:{args.listen[1]} ({exc.strerror}).", file=sys.stderr)
        return 2
    print(f"proxy {proxy.address} -> {args.target[0]}:{args.target[1]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    seen = 0
    while not stop.wait(0.5):
        with proxy._lock:
            accepted, peers, refused = proxy.accepted, dict(proxy.peers), dict(proxy.refused)
        if accepted != seen:
            seen = accepted
            print(f"peers {json.dumps(peers, sort_keys=True)} refused {json.dumps(refused, sort_keys=True)}",
                  flush=True)
    proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
