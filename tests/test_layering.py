"""The library's layering, read from its own import statements (lazy ones inside functions included):

- the library never imports Prefect (style guide: every function callable from a plain Python shell);
- no import loop inside `mnist_etc`, between modules or between its rooms (a package or a top-level module);
- the DP mechanism (`dp`) sits below `training`, the audit that judges trained models above it; `config` and
  `tracking` stay below everything they serve.
"""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "mnist_etc"

# room -> rooms it must never import (directly or through a lazily imported name).
FORBIDDEN = {
    "dp": ("audit", "training", "model_store", "export", "sweep", "benchmark", "tracking"),
    "training": ("audit", "model_store", "export", "sweep", "benchmark"),
    "config": ("dp", "audit", "training", "model_store", "export", "sweep", "benchmark", "triton", "tracking"),
    "tracking": ("dp", "audit", "training", "model_store", "export", "export_source", "sweep", "benchmark", "triton"),
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in LIBRARY.rglob("*.py") if p.name != "python_model.py"}


def _lazy_homes(package: str, modules: dict[str, Path]) -> dict[str, str]:
    """name -> submodule of a package that exports names on first use (`mnist_etc.lazy_exports`)."""
    path = modules.get(package)
    if path is None or path.name != "__init__.py":
        return {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_HOMES" for t in node.targets):
            return {k: f"{package}.{v}" for k, v in ast.literal_eval(node.value).items()}
    return {}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the library modules it imports, at any depth of its code."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                homes = _lazy_homes(base, modules)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else homes.get(a.name, base)
                           for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def room(module: str) -> str:
    """`mnist_etc.audit.gates.base` -> `audit`; `mnist_etc.training` -> `training`; the package face -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for src, targets in graph.items():
        rooms.setdefault(room(src), set()).update(room(t) for t in targets if room(t) != room(src))
    return rooms


@pytest.fixture(scope="module")
def graph():
    return import_graph(library_modules())


def test_the_cycle_finder_finds_a_loop():
    # A check that cannot fail proves nothing: the finder must see a lazy loop like the one sweep/tracking and
    # sweep/transport had (each importing the other inside a function).
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_lazy_imports_and_lazy_exports(graph):
    # dp/sgd.py imports fast_clipping and layerwise by `from mnist_etc.dp import ...`; the audit's canary
    # package exports `CanaryAuditConfig` lazily from its config module.
    assert {"mnist_etc.dp.fast_clipping", "mnist_etc.dp.layerwise"} <= graph["mnist_etc.dp.sgd"]
    assert "mnist_etc.audit.canary.config" in graph["mnist_etc.audit.config"]
    # imported inside reconstruction_of()
    assert {"mnist_etc.audit.reconstruction", "mnist_etc.dp.accounting"} <= graph["mnist_etc.audit.run"]


def test_no_import_loop_between_library_modules(graph):
    assert cycles(graph) == []


def test_no_import_loop_between_library_rooms(graph):
    assert cycles(room_graph(graph)) == []


@pytest.mark.parametrize("lower", sorted(FORBIDDEN))
def test_lower_rooms_never_import_higher_ones(graph, lower):
    rooms = room_graph(graph)
    assert lower in rooms, f"no room {lower!r} in mnist_etc"
    bad = sorted(set(FORBIDDEN[lower]) & rooms[lower])
    culprits = sorted(f"{src} -> {t}" for src, ts in graph.items() if room(src) == lower for t in ts if room(t) in bad)
    assert not bad, culprits


def test_privacy_package_is_gone_and_the_new_rooms_import():
    assert not (LIBRARY / "privacy").exists()
    for name in ("mnist_etc.dp", "mnist_etc.audit", "mnist_etc.tracking"):
        importlib.import_module(name)


def test_no_library_module_imports_prefect():
    modules = sorted(library_modules())
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "bad = sorted(n for n in sys.modules if n == 'prefect' or n.startswith('prefect.'))\n"
            "print(len(bad)); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert len(modules) > 30


def test_tracking_imports_nothing_above_it():
    """mnist_etc.tracking is MLflow's home, below the sweep, the benchmark, the export, training, dp and the
    audit: they call it with plain data, never the other way round; and it loads MLflow only when called."""
    tracking = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                      for p in (REPO / "mnist_etc" / "tracking").glob("*.py"))
    above = ("mnist_etc.sweep", "mnist_etc.benchmark", "mnist_etc.export", "mnist_etc.export_source",
             "mnist_etc.model_store", "mnist_etc.training", "mnist_etc.dp", "mnist_etc.audit",
             "mnist_etc.triton", "mlflow", "tensorflow")
    code = ("import importlib, sys\n"
            f"for m in {tracking!r}:\n    importlib.import_module(m)\n"
            f"bad = sorted(n for n in sys.modules if n.startswith({above!r}))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert len(tracking) >= 10
