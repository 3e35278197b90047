"""Concurrency, tried for real.

- Eight retrain requests released at the same instant (four threads of one app process, four other
  processes): exactly one runs, every other one is told a retrain is already running.
- Readers loading real model checkpoints while another process keeps switching versions as fast
  as it can: every load is whole (weights, arrays and manifest of one and the same save), never an
  error, never a fallback. The same for feature-cache entries being rewritten under readers.
- The browser soak (``@pytest.mark.browser``): eight Chromium sessions against ``streamlit run`` on
  127.0.0.1 upload real clips (and a bad file) and click points of the latent map for
  ``MUSICLUST_SOAK_SECONDS`` (default 20; 60 to measure): no exception in any page, every answer equal
  to the service's answer for that file, the server's memory bounded. The server is always stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser_support import POINT_JS
import soundfile as sf

from musiclust.serving import checkpoint as ckpt
from musiclust.serving.bundle import ModelBundle
from musiclust.errors import JobBusyError
from musiclust.features.mel import FeatureStore, compute_features
from musiclust.serving.jobs import RUNNING, RetrainJobs
from musiclust.service import Service, dataset_slug

REPO = Path(__file__).resolve().parents[1]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def wait_until(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


# --- two (eight) retrains at once ------------------------------------------------------------------
RACER = textwrap.dedent(
    r"""
    import sys, time, os
    from pathlib import Path
    from musiclust.serving.jobs import RetrainJobs
    from musiclust.errors import JobBusyError
    state, repo, go = sys.argv[1:4]
    args = sys.argv[4:]
    jobs = RetrainJobs(Path(state), Path(repo))
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    try:
        status = jobs.start(args)
        print("started", status.job_id, flush=True)
    except JobBusyError as exc:
        print("busy", exc, flush=True)
    """
)


def test_simultaneous_retrains_exactly_one_runs(trained_checkpoints, real_music_folder, tmp_path):
    dataset = str(real_music_folder)
    root = tmp_path / "checkpoints"
    shutil.copytree(trained_checkpoints, root, symlinks=True)
    before = tree_digest(root)
    state = tmp_path / "jobs"
    go = tmp_path / "go"
    args = ["--data", dataset, "--models", "basic_vae", "--epochs", "500", "--latent-dim", "8", "--checkpoints", str(root)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(state), str(REPO), str(go), *args],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    outcomes: list[str] = []
    ready = threading.Barrier(5)

    def session() -> None:  # one browser session's click, in the app's own process
        jobs = RetrainJobs(state, REPO)
        ready.wait()
        while not go.exists():
            time.sleep(0.0005)
        try:
            outcomes.append(f"started {jobs.start(args).job_id}")
        except JobBusyError as exc:
            outcomes.append(f"busy {exc}")

    threads = [threading.Thread(target=session) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        ready.wait()
        go.touch()  # all eight go at once
        for t in threads:
            t.join(60)
        for p in procs:
            outcomes.append(p.communicate(timeout=60)[0].strip())
        started = [o for o in outcomes if o.startswith("started")]
        busy = [o for o in outcomes if o.startswith("busy")]
        assert len(started) == 1 and len(busy) == 7, outcomes
        assert all("already running" in b for b in busy), busy
        jobs = RetrainJobs(state, REPO)
        assert jobs.is_running()
        assert jobs.status().job_id == started[0].split()[1], "the status names the run that won"
    finally:
        jobs = RetrainJobs(state, REPO)
        jobs.cancel()
        try:
            wait_until(lambda: not jobs.is_running(), 120, "the cancelled retrain to stop")
        finally:
            if jobs.is_running():
                jobs.kill()
                wait_until(lambda: not jobs.is_running(), 30, "the killed retrain to stop")
    status = jobs.status()
    assert status.state != RUNNING
    assert tree_digest(root) == before, "a cancelled retrain changed saved models"


# --- readers never see half a checkpoint -------------------------------------------------------------
SWITCHER = textwrap.dedent(
    r"""
    import sys, time
    from musiclust.serving import checkpoint as ckpt
    src, root, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    sources = [ckpt.load(src, n, fallback=False) for n in ("basic_vae", "conv_vae")]
    print("ready", flush=True)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        ckpt.save(root, "served", sources[i % 2])
        i += 1
    print(i, flush=True)
    """
)


def test_readers_never_see_half_a_checkpoint(trained_checkpoints, real_music_folder, tmp_path):
    src = trained_checkpoints / dataset_slug(str(real_music_folder))
    sources = {n: ckpt.load(src, n, fallback=False) for n in ("basic_vae", "conv_vae")}
    root = tmp_path / "checkpoints"
    ckpt.save(root, "served", sources["basic_vae"])
    seconds = 6.0
    writer = subprocess.Popen([sys.executable, "-c", SWITCHER, str(src), str(root), str(seconds)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    loads: list[str] = []
    errors: list[str] = []

    def reader() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                bundle = ckpt.load(root, "served", fallback=False, build=ModelBundle.from_checkpoint)
                source = sources[bundle.architecture]
                state = bundle.model.state_dict()
                for key, value in source.weights.items():
                    if not np.array_equal(state[key].numpy().ravel(), np.ravel(value)):  # (0-d counters may be stored as (1,))
                        raise AssertionError(f"{key} of a {bundle.architecture} load is not that save's: {state[key]} vs {value!r}")
                assert "fallback_reason" not in bundle.meta
                loads.append(bundle.architecture)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                errors.append(f"{type(exc).__name__}: {exc}")

    try:
        assert writer.stdout.readline().strip() == "ready"
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        saves = int(writer.communicate(timeout=60)[0].strip())
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    print(f"\n{saves} version switches under {len(loads)} whole loads by 3 readers, {len(errors)} errors")
    assert not errors, errors[:3]
    assert saves >= 10 and len(loads) >= 10
    assert set(loads) == {"basic_vae", "conv_vae"}, "readers saw both models: the switches really happened under them"


RAPID_SAVER = textwrap.dedent(
    r"""
    import sys, time, numpy as np
    from musiclust.serving import checkpoint as ckpt
    root, seconds = sys.argv[1], float(sys.argv[2])
    print("ready", flush=True)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        i += 1
        ckpt.save(root, "m", ckpt.Checkpoint({"value": i, "versions": {}}, {"w": np.full(2_000_000, i, np.float32)}, {"a": np.arange(3) + i}))
    print(i, flush=True)
    """
)


def test_readers_during_back_to_back_saves_get_whole_versions(tmp_path):
    """Saves back to back (8 MB each) prune the version a reader has just resolved: the reader must
    get a whole version, not fail. (Before ``checkpoint.load_version`` read through handles opened up
    front and ``load`` re-read a switched version, about one load in ten failed with 'arrays.safetensors
    is missing'.)"""
    root = tmp_path / "checkpoints"
    ckpt.save(root, "m", ckpt.Checkpoint({"value": 0, "versions": {}}, {"w": np.zeros(2_000_000, np.float32)}, {"a": np.arange(3)}))
    seconds = 4.0
    writer = subprocess.Popen([sys.executable, "-c", RAPID_SAVER, str(root), str(seconds)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    loads, errors = [], []

    def reader() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                c = ckpt.load(root, "m", fallback=False)
                value = c.meta["value"]
                if not (np.all(c.weights["w"] == value) and np.array_equal(c.arrays["a"], np.arange(3) + value)):
                    raise AssertionError(f"version {value} is not whole")
                loads.append(value)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {exc}")

    try:
        assert writer.stdout.readline().strip() == "ready"
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        saves = int(writer.communicate(timeout=60)[0].strip())
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    print(f"\n{saves} back-to-back saves under {len(loads)} loads, {len(errors)} errors")
    assert not errors, errors[:3]
    assert saves >= 10 and len(set(loads)) >= 5


CACHE_WRITER = textwrap.dedent(
    r"""
    import sys, time
    from pathlib import Path
    from musiclust.features.mel import FeatureStore, compute_features
    cache, entry, a, b, seconds = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    store = FeatureStore(Path(cache))
    feats = [compute_features(Path(a)), compute_features(Path(b))]
    print("ready", flush=True)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        store._write(entry, feats[i % 2])
        i += 1
    print(i, flush=True)
    """
)


def test_readers_never_see_half_a_cache_entry(real_clip_paths, tmp_path):
    a, b = real_clip_paths[0], real_clip_paths[1]
    want = {0: compute_features(a), 1: compute_features(b)}
    store = FeatureStore(tmp_path / "cache")
    entry = tmp_path / "cache" / "x" / "entry.npz"
    store._write(entry, want[0])
    seconds = 4.0
    writer = subprocess.Popen([sys.executable, "-c", CACHE_WRITER, str(tmp_path / "cache"), str(entry), str(a), str(b), str(seconds)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seen = {0: 0, 1: 0}
    bad: list[str] = []

    def reader() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got = store._read(entry)
            if got is None:
                bad.append("an entry that exists read as missing or damaged")
                continue
            match = [k for k, f in want.items() if got.mel_db.shape == f.mel_db.shape and np.array_equal(got.mel_db, f.mel_db)
                     and np.array_equal(got.mfcc_stats, f.mfcc_stats)]
            if not match:
                bad.append("a mixed or partial entry")
            else:
                seen[match[0]] += 1

    try:
        assert writer.stdout.readline().strip() == "ready"
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        writes = int(writer.communicate(timeout=60)[0].strip())
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    print(f"\n{writes} cache rewrites under {sum(seen.values())} whole reads, {len(bad)} bad")
    assert not bad, bad[:3]
    assert writes >= 10 and seen[0] and seen[1]
    assert not list(entry.parent.glob("*.tmp")), "no temporary files left behind"


# --- the browser soak ----------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']"
CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot"
SESSIONS = int(os.environ.get("MUSICLUST_SOAK_SESSIONS", "8"))
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

    def wait_healthy(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"streamlit did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

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




async def _idle(page, timeout: float = 90_000) -> None:
    await page.wait_for_selector(IDLE, timeout=timeout)
    await page.wait_for_function("() => document.querySelectorAll(\"[data-stale='true']\").length === 0", timeout=timeout)


async def _no_exception(page, where: str) -> None:
    count = await page.locator("[data-testid='stException']").count()
    if count:
        raise AssertionError(f"{where}: {await page.locator('[data-testid=stException]').first.inner_text()}")


async def _open(browser, url: str):
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector("[data-testid='stFileUploaderDropzoneInput']", state="attached", timeout=120_000)
    await _idle(page, 120_000)
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
                await alert.wait_for(timeout=90_000)
                await _idle(page)
                await _no_exception(page, f"session {index}, {path.name}")
                assert "could not be analysed" in await alert.inner_text()
                done["bad_uploads"] += 1
            else:
                await page.locator("[data-testid='stAlertContentSuccess']", has_text=path.name).wait_for(timeout=90_000)
                await _idle(page)
                await _no_exception(page, f"session {index}, {path.name}")
                cluster = (await page.locator("[data-testid='stMetricValue']").first.inner_text()).strip()
                assert cluster == str(expected), f"session {index}: {path.name} placed in cluster {cluster}, the service says {expected}"
                done["uploads"] += 1
            done["seconds"].append(time.monotonic() - started)
            # browse the map: click its most isolated point and check the track shown is that one
            await page.locator("[data-testid='stSidebarNavLink']", has_text="Latent map").click()
            await page.locator("[data-testid='stMain'] h1", has_text="Latent map").wait_for(timeout=90_000)
            await _idle(page)
            await page.wait_for_function(POINT_JS, arg=CHART, timeout=90_000)  # the map's own chart, drawn
            await page.wait_for_timeout(300)
            target = await page.evaluate(POINT_JS, CHART)
            assert target, f"session {index}: the map has no points"
            await page.mouse.click(target["px"], target["py"])
            await page.get_by_text("Selected track").wait_for(timeout=90_000)
            await _idle(page)
            await _no_exception(page, f"session {index}, map")
            shown = await page.locator("[data-testid='stMainBlockContainer']").inner_text()
            assert html.unescape(target["title"]) in shown, f"session {index}: clicked {target['title']!r}, another track shown"
            assert await page.locator("[data-testid='stAudio']").count() >= 1
            done["clicks"] += 1
            await page.locator("[data-testid='stSidebarNavLink']", has_text="Your track").click()
            await page.locator("[data-testid='stMain'] h1", has_text="Your track").wait_for(timeout=90_000)
            await page.wait_for_selector("[data-testid='stFileUploaderDropzoneInput']", state="attached", timeout=90_000)
            await _idle(page)
    except Exception as exc:  # noqa: BLE001 - reported with the session number
        done["errors"].append(f"{type(exc).__name__}: {str(exc)[:400]}")
    return done


@pytest.mark.browser
def test_eight_sessions_upload_and_browse_at_once(trained_checkpoints, real_music_folder, real_clip_paths, tmp_path):
    async_api = pytest.importorskip("playwright.async_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
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
                    await page.get_by_text("File must be 50.0MB or smaller.").wait_for(timeout=60_000)
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
    assert peak - warm < 600 * 2**20, f"server memory grew by {(peak - warm) / 2**20:.0f} MB under {SESSIONS} sessions"
    assert tree_digest(trained_checkpoints) == before, "browsing and uploading changed saved models"
