"""The three web UIs users look at, opened in headless Chromium (Debian's `chromium`, driven by Playwright).

One world for all of them, made once per session (tests/conftest.py `world`): the session's Prefect stack and
a tiny sweep run through it (`mnist-etc sweep`, search_spaces/audit.yaml, 2 trials), which feeds the Optuna
storage, the MLflow store and a Prefect flow run with artifacts. Each test starts its own UI server on a free
127.0.0.1 port (`serve`) and stops it by process group at teardown.

`page` fails the test at teardown on any console error, uncaught page error, failed request or same-origin
HTTP error. `screenshot(page, name)` saves <tmp_path>/<name>.png, and also <MNIST_ETC_SCREENSHOTS>/<name>.png
when that variable names a folder (relative to the repository): the README's screenshots come from here.

    MNIST_ETC_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/browser
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mnist_etc.ports import free_ports
from tests.conftest import http_json, local_stack  # noqa: F401  (http_json: the browser tests import it from here)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS_ENV = "MNIST_ETC_SCREENSHOTS"


# ------------------------------------------------------------------------------------------- the servers

def stop_server(proc: subprocess.Popen, grace: float = 40.0) -> list[str]:
    """SIGINT to the server's process group (Ctrl-C, what a user does), then SIGKILL what is left; returns
    what had to be killed (empty when the server stopped on SIGINT). The grace outlasts gunicorn's own
    graceful timeout (30 s); a slow stop is reported as a warning."""
    problems = []
    started = time.monotonic()
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader: a zombie leader keeps the group "alive"
            if not local_stack.alive(proc.pid):
                if not problems and time.monotonic() - started > 10:
                    warnings.warn(f"{' '.join(map(str, proc.args[:2]))} took {time.monotonic() - started:.0f} s "
                                  f"to stop on SIGINT")
                return problems
            time.sleep(0.2)
        problems.append(f"process group {proc.pid} ({' '.join(map(str, proc.args[:3]))}) outlived "
                        f"{sig.name} for {wait:.0f} s")
    proc.poll()
    return problems


def server_starter(log_dir: Path):
    """start(args, ready_path) runs `args + ["--port", <free port>]` in a process group of its own, waits until
    GET <base><ready_path> answers 200, and returns the base URL; `procs` lists what it started."""
    procs: list[subprocess.Popen] = []

    def start(args: list[str], ready_path: str, env: dict | None = None, timeout: float = 120.0) -> str:
        port = free_ports(1)[0]
        log = log_dir / f"server-{len(procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*map(str, args), "--port", str(port)], cwd=REPO, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{args[1]} exited with {proc.returncode} during start-up:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(base + ready_path, timeout=5) as r:
                    if r.status == 200:
                        return base
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        pytest.fail(f"{args[1]} did not answer {base}{ready_path} within {timeout:.0f} s:\n"
                    f"{log.read_text(errors='replace')[-3000:]}")

    return start, procs


@pytest.fixture
def serve(tmp_path):
    """A test's servers (see server_starter); every one is stopped at teardown, and the test fails if one had
    to be killed."""
    start, procs = server_starter(tmp_path)
    yield start
    problems = [p for proc in procs for p in stop_server(proc)]
    assert not problems, problems


@pytest.fixture(scope="module")
def serve_for_module(tmp_path_factory):
    """The same for servers that several tests of a module share (a start and a stop cost 20-30 s)."""
    start, procs = server_starter(tmp_path_factory.mktemp("servers"))
    yield start
    problems = [p for proc in procs for p in stop_server(proc)]
    assert not problems, problems


# ------------------------------------------------------------------------------------------- the browser

@pytest.fixture(scope="session")
def browser():
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is not installed: run `make setup` (deployments/install_system_libs.sh "
                    "installs it), or `apt-get install chromium` as root.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True)
        yield browser
        browser.close()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


# Requests whose failure says nothing about the page, each for a stated reason; nothing else is ignored.
IGNORED_PATHS = {
    # Chromium asks every origin for /favicon.ico by itself; the Prefect server has none there (404).
    "/favicon.ico",
    # Prefect's UI (3.9.1) sets a flow-run page's favicon to /ico/<state type>.svg before the run has loaded,
    # i.e. to /ico/undefined.svg (404); the real state icon follows. A favicon, not page content.
    "/ico/undefined.svg",
    # MLflow's UI (3.17.2) asks who the current user is; a server without the basic-auth app (what `mlflow ui`
    # and `mnist-etc ui` start) has no such endpoint and answers 404. Nothing on the page depends on it.
    "/ajax-api/2.0/mlflow/users/current",
}


def _ignored(url: str) -> bool:
    return urlsplit(url).path in IGNORED_PATHS


@pytest.fixture
def page(browser):
    """A fresh page (1280x800) whose console errors, page errors, failed requests and same-origin HTTP errors
    fail the test at teardown."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    problems: list[str] = []

    def on_console(msg) -> None:
        if msg.type == "error":
            where = (msg.location or {}).get("url", "")
            # Chromium reports an HTTP error response also as a console error "Failed to load resource"
            # located at the resource's URL: ignored exactly when the response itself is.
            if not (_ignored(where) and msg.text.startswith("Failed to load resource")):
                problems.append(f"console error: {msg.text} (at {where})")

    def on_response(response) -> None:
        if response.status >= 400 and not _ignored(response.url) and (
                _origin(response.url) == _origin(page.url) or response.request.is_navigation_request()):
            problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def on_request_failed(request) -> None:
        if not _ignored(request.url):
            problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    yield page
    seen = list(problems)  # before closing: closing cancels in-flight requests (polling), which is not a finding
    context.close()
    if seen:
        pytest.fail("the page reported problems:\n" + "\n".join(seen), pytrace=False)


@pytest.fixture
def screenshot(tmp_path):
    """screenshot(page, name): the viewport as <tmp_path>/<name>.png, copied to $MNIST_ETC_SCREENSHOTS/ when set."""

    def take(page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path))
        target = os.environ.get(SCREENSHOTS_ENV)
        if target:
            folder = Path(target) if Path(target).is_absolute() else REPO / target
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path.name)
        return path

    return take
