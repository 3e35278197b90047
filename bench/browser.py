"""Streamlit servers and headless Chromium for the app-start and map figures.

A server is ``streamlit run <script>`` headless on a free port (the repository's ``.streamlit/config.toml``
applies, as for users); "healthy" is ``/_stcore/health`` answering 200; a page is "rendered" when its
expected element is there and the app is settled (``SETTLED``): idle (``[data-testid='stApp']
[data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']``), no stale element left,
and no element still fetching its code. Streamlit loads an element's code (the audio player's, a chart's)
the first time a page shows one, and shows a skeleton (``stSkeleton``) in its place meanwhile: a fresh
page can read idle with its players not yet in the DOM (0 at idle, all 6 half a second later, under load).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from bench.common import REPO, free_port, python_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']"
# The app idle, nothing stale, every element's code loaded (no Suspense skeleton left): a page expression.
SETTLED = (f'!!document.querySelector("{IDLE}") && !document.querySelector("[data-stale=\'true\']")'
           ' && !document.querySelector("[data-testid=\'stSkeleton\']")')


def browser_problem() -> Optional[str]:
    """Why the browser figures cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@contextmanager
def chromium(extra_flags: tuple = ()) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + list(extra_flags), headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Server:
    """``streamlit run script`` on a free port; ``started`` is the monotonic time of the launch.

    ``root`` is the checkout the app runs from (its working directory and ``PYTHONPATH``): this repository,
    or a clean copy of it (the fresh-machine figure)."""

    def __init__(self, script: Path, env: Optional[dict] = None, root: Path = REPO):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "streamlit", "run", str(script),
            "--server.headless", "true", "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
        ]
        self._log = tempfile.TemporaryFile(mode="w+", prefix="musiclust-bench-streamlit-")  # a pipe nobody reads could fill up
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=python_env(single_thread=False, extra={**(env or {}), "PYTHONPATH": str(root)}),
            stdout=self._log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from launch until the health endpoint answers."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited ({self.proc.returncode}): {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"streamlit did not answer /_stcore/health within {timeout:.0f} s")

    def output(self) -> str:
        """What the server printed so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the session this server leads (streamlit and nothing else)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def app_env(data: str, checkpoints: Path, jobs: Path) -> dict:
    """The environment of an app the benchmark measures on ``data`` and the models in ``checkpoints``.

    The folder was given on the benchmark's command line, so it is made a library root beside the ones in
    force (otherwise the app would refuse it and show the default set: the figure would time other
    music). The first-run build stays off: these figures time the app on the models they were given,
    and a build started behind them would load the machine and write into ``checkpoints``; the
    fresh-machine figure measures the first run."""
    from musiclust.data.roots import ROOTS_ENV, is_default_spec, library_roots

    roots = [str(root) for root in library_roots()]
    if not is_default_spec(data):
        roots.append(str(Path(data).expanduser().resolve()))
    return {"MUSICLUST_DATA": data, "MUSICLUST_CHECKPOINTS": str(checkpoints), "MUSICLUST_JOBS": str(jobs),
            ROOTS_ENV: os.pathsep.join(roots), "MUSICLUST_FIRST_RUN": "off"}


@contextmanager
def server(script: Path, env: Optional[dict] = None, root: Path = REPO) -> Iterator[Server]:
    s = Server(script, env, root)
    try:
        yield s
    finally:
        s.stop()


def wait_rendered(page, expected: str, timeout_ms: int = 120_000) -> None:
    """The expected element, then the app settled (the state can read idle before a rerun starts)."""
    page.wait_for_selector(expected, state="attached", timeout=timeout_ms)
    page.wait_for_function(f"() => {SETTLED}", timeout=timeout_ms)


def page_errors(page) -> int:
    return page.locator("[data-testid='stException']").count()
