"""The privacy ledger of a released model: every mechanism that touched the training split, and what they compose
to for what was released.

    ledger = Ledger.new("models:/mnist-etc-smoke@champion", delta=1e-5)
    ledger.add(Entry("training of trial 3 (the champion)", "training", epsilon=3.1, ...))
    ledger.totals()           # {"release": ..., "with_statistics": ...}
    write_ledger(ledger, path); print(render_ledger(ledger))

Kinds of entries:
- `training`: one trial's training (its own PLD epsilon). When a search's bound covers it, `covered_by` names the
  selection entry and it does not compose on its own (the search's bound already holds every trial's training).
- `selection`: the search that chose the champion (`mnist_etc.sweep.search_privacy`), with its RDP curve.
- `canary audit`: a one-run canary audit's training on the same digits; its outputs (epsilon_lb, scores) are
  published, so it composes with the rest.
- `statistic of members`: a figure computed on training members without noise (the audit's membership AUC and
  member - non-member gap): not private.

Totals compose the top-level entries (not covered by another) in RDP at the same orders where each has a curve
(sums of curves: Renyi DP composes additively, also adaptively), else by basic composition of (epsilon, delta).
`release` leaves the statistics of members out: the model, its selection and the canary runs. `with_statistics`
puts them in, and is infinite as soon as one is published, which `render_ledger` says in words.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LEDGER_FILE = "privacy_ledger.json"
KINDS = ("training", "selection", "canary audit", "statistic of members")


def _number(x: Any) -> float:
    """JSON keeps infinity as the text "inf"."""
    return math.inf if x in ("inf", "Infinity") else float(x)


def _json_number(x: float | None) -> Any:
    return None if x is None else ("inf" if math.isinf(x) else x)


@dataclass
class Entry:
    mechanism: str                  # what ran, in words ("training of trial 3 (the champion)")
    kind: str                       # one of KINDS
    epsilon: float                  # inf: not private
    delta: float
    accountant: str                 # how epsilon was found ("PLD", "RDP, Papernot-Steinke", "none")
    rdp: list[float] | None = None  # its RDP curve at the ledger's orders, when known (composition)
    covered_by: str | None = None   # the mechanism of the entry whose bound includes this one
    published: str = ""             # where its outputs went
    when: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["epsilon"] = _json_number(self.epsilon)
        if self.rdp is not None:
            d["rdp"] = [_json_number(float(v)) for v in self.rdp]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Entry":
        d = dict(d)
        d["epsilon"] = _number(d["epsilon"])
        if d.get("rdp") is not None:
            d["rdp"] = [_number(v) for v in d["rdp"]]
        return cls(**d)


@dataclass
class Ledger:
    model: str                      # what the ledger is of (a registered model reference, or a model directory)
    delta: float                    # the delta every total is stated at
    orders: list[float]             # RDP orders of the curves
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def new(cls, model: str, delta: float) -> "Ledger":
        from mnist_etc.dp.private_selection import DEFAULT_ORDERS

        return cls(model, delta, [float(o) for o in DEFAULT_ORDERS])

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)

    def top_level(self, statistics: bool) -> list[Entry]:
        return [e for e in self.entries if e.covered_by is None and (statistics or e.kind != "statistic of members")]

    def compose(self, entries: list[Entry]) -> tuple[float, float, str]:
        """(epsilon, delta, how) of `entries` composed (see the module docstring)."""
        from mnist_etc.dp.private_selection import epsilon_from_rdp

        if not entries:
            return 0.0, 0.0, "nothing composed"
        if any(math.isinf(e.epsilon) for e in entries):
            which = "; ".join(e.mechanism for e in entries if math.isinf(e.epsilon))
            return math.inf, self.delta, f"not private: {which}"
        curved = [e for e in entries if e.rdp is not None]
        loose = [e for e in entries if e.rdp is None]
        eps, delta = 0.0, 0.0
        how = []
        if curved:
            total = np.sum([np.asarray(e.rdp, float) for e in curved], axis=0)
            eps, delta = epsilon_from_rdp(np.asarray(self.orders), total, self.delta), self.delta
            how.append(f"RDP composition of {len(curved)}")
        if loose:
            eps += sum(e.epsilon for e in loose)
            delta += sum(e.delta for e in loose)
            how.append(f"basic composition of {len(loose)} more")
        return eps, delta, " + ".join(how)

    def totals(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key, statistics in (("release", False), ("with_statistics", True)):
            eps, delta, how = self.compose(self.top_level(statistics))
            out[key] = {"epsilon": _json_number(eps), "delta": delta, "how": how}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "delta": self.delta, "orders": self.orders,
                "entries": [e.to_dict() for e in self.entries], "totals": self.totals(),
                "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Ledger":
        return cls(d["model"], float(d["delta"]), [float(o) for o in d["orders"]],
                   [Entry.from_dict(e) for e in d.get("entries", [])])


def write_ledger(ledger: Ledger, path: Path) -> Path:
    from mnist_etc.atomic import write_json_atomic

    write_json_atomic(Path(path), ledger.to_dict())
    return Path(path)


def read_ledger(path: Path) -> Ledger:
    from mnist_etc.errors import UserError

    try:
        return Ledger.from_dict(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise UserError(f"no privacy ledger at {str(path)!r}; a sweep writes one beside its winner.") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"privacy ledger {str(path)!r} is not valid ({type(exc).__name__}: {exc}).") from None


def _eps(x: Any) -> str:
    x = _number(x) if x is not None else None
    return "-" if x is None else "inf (not private)" if math.isinf(x) else f"{x:.3g}"


def render_ledger(ledger: Ledger) -> str:
    """The ledger as a table and its totals, in words."""
    totals = ledger.totals()
    lines = [f"privacy ledger of {ledger.model} (delta {ledger.delta:g})", "",
             f"{'mechanism':<58} {'kind':<21} {'epsilon':>18}  accountant / covered by / published"]
    for e in ledger.entries:
        extra = [e.accountant] + ([f"covered by: {e.covered_by}"] if e.covered_by else []) + (
            [f"published: {e.published}"] if e.published else [])
        lines.append(f"{e.mechanism[:58]:<58} {e.kind:<21} {_eps(e.epsilon):>18}  {'; '.join(extra)}")
    release, stats = totals["release"], totals["with_statistics"]
    lines += ["", f"what was released (the model, its selection, canary audit runs): epsilon {_eps(release['epsilon'])} "
                  f"at delta {release['delta']:.3g} ({release['how']})"]
    if stats["epsilon"] != release["epsilon"]:
        lines.append(f"with the published statistics of members too: epsilon {_eps(stats['epsilon'])} "
                     f"({stats['how']}); such a figure is computed on training members without noise")
    return "\n".join(lines)
