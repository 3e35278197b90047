"""The browser soak (``@pytest.mark.browser``): ``MUSICLUST_SOAK_SESSIONS`` Chromium sessions (default 4; the
figures in docs/reliability.md were measured with 8) against ``streamlit run`` on
127.0.0.1 upload real clips (and a bad file) and click points of the latent map for
``MUSICLUST_SOAK_SECONDS`` (default 20; 60 to measure): no exception in any page, every answer equal
to the service's answer for that file, every session served at least once. The server's memory is
printed, not judged: how much a server holds depends on the machine and its allocator, so the figure
belongs to the benchmark. The server is always stopped.

Apart from ``test_concurrency.py`` so that the two test workers can run it beside the other
concurrency tests (the suite is spread a file at a time).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from bench.browser import SETTLED
from browser_support import POINT_JS, SELECTED_JS, hover_map_point_async, wait_healthy
import soundfile as sf

from musiclust.service import Service
from support import tree_digest

REPO = Path(__file__).resolve().parents[1]


# --- the browser soak ----------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot"
# Every browser wait is a guard against a hang, never a speed verdict: with eight sessions on a 2-core
# machine busy with other work, one click took over 30 s. Set as each page's default timeout too.
HANG_MS = 300_000
# Four by default: as many sessions as the server has cores twice over is concurrency enough to catch a
# shared-state bug, and each session's Chromium page costs ~10 s of CPU (software WebGL) in the suite.
SESSIONS = int(os.environ.get("MUSICLUST_SOAK_SESSIONS", "4"))
SOAK_SECONDS = float(os.environ.get("MUSICLUST_SOAK_SECONDS", "20"))
SOAK_MODEL = "mvae_poe"  # what the app serves first (app_support.MODEL_ORDER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run app.py`` on 127.0.0.1, in its own process group; always stopped."""

    def __init__(self, env: dict, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
                 "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def wait_healthy(self, seconds: float = HANG_MS / 1000) -> None:
        wait_healthy(self.url, self.proc, seconds, self.log)

    def rss(self) -> int:
        import psutil

        try:
            return psutil.Process(self.proc.pid).memory_info().rss
        except psutil.Error:
            return 0

    def cpu_seconds(self) -> float:
        import psutil

        try:
            t = psutil.Process(self.proc.pid).cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def _browser_cpu() -> float:
    """CPU seconds of this test's Chromium processes (children of this process)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name().lower():
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


async def _idle(page, timeout: float = HANG_MS) -> None:
    await page.wait_for_function(f"() => {SETTLED}", timeout=timeout)


async def _no_exception(page, where: str) -> None:
    count = await page.locator("[data-testid='stException']").count()
    if count:
        raise AssertionError(f"{where}: {await page.locator('[data-testid=stException]').first.inner_text()}")


async def _open(browser, url: str):
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(HANG_MS)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector("[data-testid='stFileUploaderDropzoneInput']", state="attached", timeout=HANG_MS)
    await _idle(page)
    return context, page


async def _session(index: int, page, url: str, files: list[tuple[Path, int | None]], deadline: float) -> dict:
    """One person: upload a file, check its cluster, go to the map, click a point, check the player;
    repeat until ``deadline`` (at least once)."""
    import html

    done = {"uploads": 0, "bad_uploads": 0, "clicks": 0, "errors": [], "seconds": []}
    try:
        step = index
        while step == index or time.monotonic() < deadline:
            path, expected = files[step % len(files)]
            step += 1
            started = time.monotonic()
            await page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(path))
            if expected is None:  # a bad file: a clear error, nothing else
                alert = page.locator("[data-testid='stAlertContentError']", has_text=path.name)
                await alert.wait_for(timeout=HANG_MS)
                await _idle(page)
                await _no_exception(page, f"session {index}, {path.name}")
                assert "could not be analysed" in await alert.inner_text()
                done["bad_uploads"] += 1
            else:
                await page.locator("[data-testid='stAlertContentSuccess']", has_text=path.name).wait_for(timeout=HANG_MS)
                await _idle(page)
                await _no_exception(page, f"session {index}, {path.name}")
                cluster = (await page.locator("[data-testid='stMetricValue']").first.inner_text()).strip()
                assert cluster == str(expected), f"session {index}: {path.name} placed in cluster {cluster}, the service says {expected}"
                done["uploads"] += 1
            done["seconds"].append(time.monotonic() - started)
            # browse the map: click its most isolated point and check the track shown is that one
            await page.locator("[data-testid='stSidebarNavLink']", has_text="Latent map").click()
            await page.locator("[data-testid='stMain'] h1", has_text="Latent map").wait_for(timeout=HANG_MS)
            await _idle(page)
            await page.wait_for_function(POINT_JS, arg=CHART, timeout=HANG_MS)  # the map's own chart, drawn
            await page.wait_for_timeout(300)
            assert await page.evaluate(POINT_JS, CHART), f"session {index}: the map has no points"
            target = await hover_map_point_async(page, CHART, HANG_MS)  # pointed until Plotly holds it
            await page.mouse.click(target["px"], target["py"])
            await page.get_by_text("Selected track").wait_for(timeout=HANG_MS)
            await _idle(page)
            await _no_exception(page, f"session {index}, map")
            selected = await page.evaluate(SELECTED_JS)
            assert selected and selected["src"], f"session {index}: no selected track with a player"
            assert html.unescape(target["title"]) in selected["line"], \
                f"session {index}: clicked {target['title']!r}, the page shows {selected['line']!r}"
            done["clicks"] += 1
            await page.locator("[data-testid='stSidebarNavLink']", has_text="Your track").click()
            await page.locator("[data-testid='stMain'] h1", has_text="Your track").wait_for(timeout=HANG_MS)
            await page.wait_for_selector("[data-testid='stFileUploaderDropzoneInput']", state="attached", timeout=HANG_MS)
            await _idle(page)
    except Exception as exc:  # noqa: BLE001 - reported with the session number
        done["errors"].append(f"{type(exc).__name__}: {str(exc)[:400]}")
    return done


@pytest.mark.browser
def test_sessions_upload_and_browse_at_once(trained_checkpoints, real_music_folder, real_clip_paths, tmp_path):
    from playwright import async_api  # Chromium's presence is checked by conftest (a failure, not a skip)

    dataset = str(real_music_folder)
    before = tree_digest(trained_checkpoints)
    service = Service(dataset, trained_checkpoints)
    assert SOAK_MODEL in service.models()
    files: list[tuple[Path, int | None]] = []
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for path in real_clip_paths[:7]:  # every session cycles through real clips (and one bad file)
        copy = uploads / path.name
        shutil.copy(path, copy)
        files.append((copy, service.analyse(SOAK_MODEL, copy).placement.cluster))
    too_big = uploads / "over-the-limit.wav"
    y, sr = sf.read(real_clip_paths[0], dtype="int16")
    sf.write(too_big, np.tile(y, 51 * 2**20 // y.nbytes + 1), sr, subtype="PCM_16")
    assert too_big.stat().st_size > 50 * 2**20
    bad = uploads / "not-really-audio.wav"
    bad.write_text("these are lyrics, not audio\n" * 50)
    files.insert(3, (bad, None))

    env = {**os.environ, "MUSICLUST_CHECKPOINTS": str(trained_checkpoints), "MUSICLUST_DATA": dataset,
           "MUSICLUST_JOBS": str(tmp_path / "jobs")}
    server = Server(env, tmp_path / "streamlit.log")
    samples: list[tuple[float, int]] = []
    stop_sampling = threading.Event()
    timings: dict = {}
    try:
        server.wait_healthy()

        def sample() -> None:
            while not stop_sampling.wait(0.5):
                samples.append((time.monotonic(), server.rss()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        async def soak():
            async with async_api.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
                try:
                    opened = time.monotonic()  # every session opens the app first (the model loads once)
                    sessions = await asyncio.gather(*[_open(browser, server.url) for _ in range(SESSIONS)])
                    timings["open"] = time.monotonic() - opened
                    # the real widget refuses a file over the upload limit in the browser: nothing reaches the page
                    page = sessions[0][1]
                    await page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(too_big))
                    await page.get_by_text("File must be 50.0MB or smaller.").wait_for(timeout=HANG_MS)
                    await _idle(page)
                    await _no_exception(page, "over the upload limit")
                    assert await page.locator("[data-testid='stAlertContentSuccess']").count() == 0
                    warm = server.rss()
                    timings["cpu0"] = (server.cpu_seconds(), _browser_cpu())
                    started = time.monotonic()
                    results = await asyncio.gather(*[_session(i, page, server.url, files, started + SOAK_SECONDS)
                                                     for i, (_, page) in enumerate(sessions)])
                    timings["cpu1"] = (server.cpu_seconds(), _browser_cpu())
                    for context, _ in sessions:
                        await context.close()
                    return warm, time.monotonic() - started, results
                finally:
                    await browser.close()

        warm, elapsed, results = asyncio.run(soak())
    finally:
        stop_sampling.set()
        server.stop()
    assert server.proc.poll() is not None, "the server was stopped"
    server_log = server.log.read_text(errors="replace")

    errors = [f"session {i}: {e}" for i, r in enumerate(results) for e in r["errors"]]
    uploads_done = sum(r["uploads"] for r in results)
    bad_done = sum(r["bad_uploads"] for r in results)
    clicks = sum(r["clicks"] for r in results)
    rss = [r for _, r in samples if r]
    peak = max(rss) if rss else 0
    final = rss[-1] if rss else 0
    half = rss[len(rss) // 2 :] or [0]
    answer_s = sorted(x for r in results for x in r["seconds"]) or [0.0]
    print(f"\nsoak: {SESSIONS} sessions opened in {timings.get('open', 0):.0f} s, then {elapsed:.0f} s of use: {uploads_done} uploads "
          f"answered, {bad_done} bad files refused, {clicks} map clicks; upload-to-answer median {np.median(answer_s):.1f} s, "
          f"max {answer_s[-1]:.1f} s; server RSS warm {warm / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB, last {final / 2**20:.0f} MB, "
          f"second-half range {min(half) / 2**20:.0f}-{max(half) / 2**20:.0f} MB; CPU during use: server "
          f"{timings['cpu1'][0] - timings['cpu0'][0]:.0f} s, browser {timings['cpu1'][1] - timings['cpu0'][1]:.0f} s")
    assert not errors, errors
    assert "Traceback" not in server_log, server_log[-3000:]
    assert all(r["uploads"] + r["bad_uploads"] >= 1 for r in results), "every session got at least one answer"
    assert uploads_done + bad_done >= SESSIONS and clicks >= SESSIONS, "every session uploaded and clicked at least once"
    assert tree_digest(trained_checkpoints) == before, "browsing and uploading changed saved models"
