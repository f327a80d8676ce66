"""Several hosts on one machine, for tests and benchmarks: Linux network namespaces joined by veth pairs on one
bridge, on a private test subnet (10.231.0.0/24 by default), made here and removed here. Needs root and `ip`.

    with TestNet() as net:                                  # removes leftovers named mnetc-* first
        orch = net.add_host("orch", 2, 3)                   # namespace mnetc-orch, 10.231.0.2 and .3
        w1 = net.add_host("w1", 11)
        subprocess.Popen(net.command(w1, ["prefect", "worker", "start", ...], hide=[orch_dir]))
        net.link_down(w1); net.link_up(w1)                  # a cable pulled and put back
        net.blackhole(w1, orch.addrs[1]); net.unblackhole(w1, orch.addrs[1])   # one destination gone
    # every namespace, link and process inside the namespaces is gone here, also after an exception

The layout, in namespace terms:
- `mnetc-sw`: the switch, a bridge `br0` holding the far end of every host's veth pair. Nothing runs there.
- the root namespace is a host too (10.231.0.1, link `mnetc-root`): PostgreSQL listens on 127.0.0.1 only, so the
  harness puts a TCP proxy (deployments/fault_proxy.py) on 10.231.0.1 in front of it.
- every `add_host(name, ...)` is namespace `mnetc-<name>` with `lo` up and `eth0` holding its addresses.
No routing between namespaces through the root namespace (ip_forward is not touched): all hosts share the bridge's
layer 2 segment, so traffic to a test address never leaves the subnet, and nothing else is reachable from a host
(no default route).

`command(host, argv, hide=[...])` runs argv in the host's namespace and, with `hide`, in a mount namespace of its
own where each hidden directory is covered by an empty read-only tmpfs: a worker host cannot read (or write) the
orchestrator's files even though they sit on the same disk.

Faults, all undone by `close()`: `link_down(host)` (the host's cable: every connection of that host stalls),
`blackhole(host, addr)` (a route in the host's namespace that drops packets to one address: that server, and only
that one, is unreachable from that host; no iptables is needed).
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from mnist_etc.errors import UserError

PREFIX = "mnetc"
SUBNET = "10.231.0.0/24"
ROOT_HOST = 1            # the root namespace's address on the subnet: .1
SWITCH = "sw"
BRIDGE = "br0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def netns_supported() -> str | None:
    """None when this process can make network namespaces, else why not (a phrase for a skip reason)."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"{PREFIX}-probe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"ip netns add fails here ({done.stderr.strip()[:100]})"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


def namespaces(prefix: str = PREFIX) -> list[str]:
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(prefix + "-")]


def root_links(prefix: str = PREFIX) -> list[str]:
    out = _ip("-o", "link", "show").stdout
    names = [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(prefix + "-")]


def _kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process that lives in namespace `ns` (started by this harness: the namespace is ours)."""
    for _ in range(5):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def remove_leftovers(prefix: str = PREFIX) -> list[str]:
    """Delete every namespace and root-namespace link named `<prefix>-*` (a previous run that died), killing the
    processes inside those namespaces first. Returns what was removed."""
    removed = []
    for ns in namespaces(prefix):
        _kill_namespace_processes(ns)
        _ip("netns", "del", ns, check=False)
        removed.append(ns)
    for link in root_links(prefix):   # deleting one end of a veth pair deletes both
        _ip("link", "del", link, check=False)
        removed.append(link)
    return removed


@dataclass
class Host:
    name: str
    ns: str
    addrs: list[str]
    link: str                      # the host's veth end on the switch (link_down/up act on it)
    blackholes: set[str] = field(default_factory=set)

    @property
    def addr(self) -> str:
        return self.addrs[0]


class TestNet:
    """The namespaces, bridge and links of one test network; a context manager that always cleans up."""

    __test__ = False   # not a pytest test class

    def __init__(self, prefix: str = PREFIX, subnet: str = SUBNET) -> None:
        if len(prefix) > 6:
            raise UserError(f"prefix {prefix!r} is too long for interface names; pass at most 6 characters.")
        self.prefix = prefix
        self.net = ipaddress.ip_network(subnet)
        if not self.net.is_private:
            raise UserError(f"subnet {subnet} is not a private network; pass one inside 10.0.0.0/8, 172.16.0.0/12 "
                            f"or 192.168.0.0/16.")
        self.switch = f"{prefix}-{SWITCH}"
        self.root_link = f"{prefix}-root"
        self.hosts: dict[str, Host] = {}
        self.root_addr = self.address(ROOT_HOST)
        self._open = False

    def address(self, index: int) -> str:
        return str(self.net.network_address + index)

    # ------------------------------------------------------------------------------------------ lifetime

    def __enter__(self) -> "TestNet":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        reason = netns_supported()
        if reason:
            raise UserError(f"the multi-host harness {reason}.")
        remove_leftovers(self.prefix)
        self._open = True
        try:
            _ip("netns", "add", self.switch)
            _ip("-n", self.switch, "link", "set", "lo", "up")
            _ip("-n", self.switch, "link", "add", BRIDGE, "type", "bridge")
            _ip("-n", self.switch, "link", "set", BRIDGE, "up")
            # The root namespace's leg: its end keeps the name mnetc-root (cleanup finds it by the prefix).
            _ip("link", "add", self.root_link, "type", "veth", "peer", "name", "root", "netns", self.switch)
            _ip("-n", self.switch, "link", "set", "root", "master", BRIDGE, "up")
            _ip("addr", "add", f"{self.root_addr}/{self.net.prefixlen}", "dev", self.root_link)
            _ip("link", "set", self.root_link, "up")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove every namespace (killing what runs in it) and link of this network. Idempotent."""
        if self._open:
            remove_leftovers(self.prefix)
            self._open = False
            self.hosts.clear()

    # ------------------------------------------------------------------------------------------ hosts

    def add_host(self, name: str, *indexes: int) -> Host:
        """Namespace `<prefix>-<name>` with the subnet addresses `.index` on its eth0, cabled to the switch."""
        ns = f"{self.prefix}-{name}"
        if len(name) > 8 or name in self.hosts or name in (SWITCH, "root"):
            raise UserError(f"host name {name!r} is taken or longer than 8 characters; pick another.")
        addrs = [self.address(i) for i in indexes]
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        port = f"port-{name}"   # its end on the switch (a bare name such as "a" would parse as an ip keyword)
        _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.switch)
        for addr in addrs:
            _ip("-n", ns, "addr", "add", f"{addr}/{self.net.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", self.switch, "link", "set", port, "master", BRIDGE, "up")
        host = Host(name, ns, addrs, port)
        self.hosts[name] = host
        return host

    def command(self, host: Host, argv: list[str], hide: list[Path] = ()) -> list[str]:
        """argv run in `host`'s namespace; each directory of `hide` covered by an empty read-only tmpfs there."""
        if not hide:
            return ["ip", "netns", "exec", host.ns, *argv]
        mounts = " && ".join(f"mount -t tmpfs -o ro,size=4k,mode=0555 {self.prefix}-hidden '{Path(d)}'"
                             for d in hide)
        # `ip netns exec` gives the command a mount namespace of its own (slave to the root one); `unshare -m`
        # makes sure, so the tmpfs covers the directories for this process tree only.
        return ["ip", "netns", "exec", host.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
                f'{mounts} && exec "$@"', "sh", *argv]

    # ------------------------------------------------------------------------------------------ faults

    def link_down(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.link, "down")

    def link_up(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.link, "up")

    def blackhole(self, host: Host, addr: str) -> None:
        """Packets from `host` to `addr` are dropped (a route of type blackhole in the host's namespace)."""
        _ip("-n", host.ns, "route", "add", "blackhole", f"{addr}/32")
        host.blackholes.add(addr)

    def unblackhole(self, host: Host, addr: str) -> None:
        _ip("-n", host.ns, "route", "del", "blackhole", f"{addr}/32", check=False)
        host.blackholes.discard(addr)
