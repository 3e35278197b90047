"""Concurrency, tried for real.

- Eight retrain requests released at the same instant (four threads of one app process, four other
  processes): exactly one runs, every other one is told a retrain is already running.
- Readers loading real model checkpoints while another process switches versions, a fixed number of
  times in back-to-back bursts: every load is whole (weights, arrays and manifest of one and the same
  save), never an error, never a fallback, and a load started after a switch reads the new version.
  The same for 8 MB saves that prune what readers resolve, and for feature-cache entries rewritten
  under readers. Nothing is counted per second, so the verdict does not depend on the machine's speed.
- The browser soak (``@pytest.mark.browser``): eight Chromium sessions against ``streamlit run`` on
  127.0.0.1 upload real clips (and a bad file) and click points of the latent map for
  ``MUSICLUST_SOAK_SECONDS`` (default 20; 60 to measure): no exception in any page, every answer equal
  to the service's answer for that file, every session served at least once. The server's memory is
  printed, not judged: how much a server holds depends on the machine and its allocator, so the figure
  belongs to the benchmark. The server is always stopped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from browser_support import POINT_JS, SELECTED_JS, wait_healthy
import soundfile as sf

from musiclust.serving import checkpoint as ckpt
from musiclust.serving.bundle import ModelBundle
from musiclust.errors import JobBusyError
from musiclust.features.mel import FeatureStore, compute_features
from musiclust.serving.jobs import RUNNING, RetrainJobs
from musiclust.service import Service, dataset_slug
from support import tree_digest, wait_until

REPO = Path(__file__).resolve().parents[1]


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
# A writer process writes a fixed number of versions, back to back in bursts; after each burst it waits
# until a reader has finished a read that *started* after the burst, and that read must return the last
# version written. So the verdict counts nothing per second: every read is whole, the writes provably
# happened while the readers read, and a read that follows a switch sees the new version, on any machine
# at any load.
BURSTS = textwrap.dedent(
    r"""
    import sys

    def bursts(n, every, write):
        print("ready", flush=True)
        sys.stdin.readline()  # the readers are reading
        for i in range(1, n + 1):
            write(i)
            if i % every == 0 or i == n:
                print(i, flush=True)  # version i is written; wait until a reader has read after it
                sys.stdin.readline()
    """
)


class Readers:
    """Threads calling ``read()`` back to back until stopped; each call's start time and result (or error)."""

    def __init__(self, read, count: int = 3):
        self.read, self.count = read, count
        self.records: list[tuple[float, object, str | None]] = []  # (started, value, error)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def _loop(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.records.append((started, self.read(), None))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.records.append((started, None, f"{type(exc).__name__}: {exc}"))

    def first_read_after(self, moment: float, hang_guard: float = 300.0) -> tuple[object, str | None]:
        deadline = time.monotonic() + hang_guard
        while time.monotonic() < deadline:
            later = [r for r in list(self.records) if r[0] > moment]
            if later:
                return later[0][1], later[0][2]
            time.sleep(0.001)
        raise AssertionError(f"no read finished within {hang_guard:.0f} s (a hang)")

    def errors(self) -> list[str]:
        return [e for _, _, e in self.records if e]


def interleave(script: str, args: list[str], readers: Readers, expect) -> int:
    """Run the writer ``script`` (which calls ``bursts``) against ``readers``; returns the versions written.
    ``expect(i)`` is what a read started after version ``i`` must return."""
    writer = subprocess.Popen([sys.executable, "-c", BURSTS + script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    written = 0
    try:
        assert writer.stdout.readline().strip() == "ready"
        for t in readers.threads:
            t.start()
        readers.first_read_after(0.0)
        writer.stdin.write("go\n")
        writer.stdin.flush()
        while line := writer.stdout.readline().strip():
            written = int(line)
            value, error = readers.first_read_after(time.monotonic())
            assert error is None, f"a read after version {written}: {error}"
            assert value == expect(written), f"a read started after version {written} returned {value!r}, not {expect(written)!r}"
            writer.stdin.write("next\n")
            writer.stdin.flush()
        assert writer.wait(timeout=120) == 0, "the writer failed"
    finally:
        readers.stop.set()
        for t in readers.threads:
            if t.ident is not None:  # started
                t.join(120)
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    return written


SWITCHER = textwrap.dedent(
    r"""
    from musiclust.serving import checkpoint as ckpt
    src, root, n, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sources = [ckpt.load(src, name, fallback=False) for name in ("basic_vae", "conv_vae")]
    bursts(n, every, lambda i: ckpt.save(root, "served", sources[i % 2]))
    """
)


def test_readers_never_see_half_a_checkpoint(trained_checkpoints, real_music_folder, tmp_path):
    """Three threads build real models from a checkpoint another process keeps switching (basic_vae and
    conv_vae alternately, 24 switches in bursts of 4): every load is one whole save, none fails or falls back."""
    src = trained_checkpoints / dataset_slug(str(real_music_folder))
    names = ("basic_vae", "conv_vae")
    sources = {n: ckpt.load(src, n, fallback=False) for n in names}
    root = tmp_path / "checkpoints"
    ckpt.save(root, "served", sources["basic_vae"])

    def load() -> str:
        bundle = ckpt.load(root, "served", fallback=False, build=ModelBundle.from_checkpoint)
        state = bundle.model.state_dict()
        for key, value in sources[bundle.architecture].weights.items():
            if not np.array_equal(state[key].numpy().ravel(), np.ravel(value)):  # (0-d counters may be stored as (1,))
                raise AssertionError(f"{key} of a {bundle.architecture} load is not that save's: {state[key]} vs {value!r}")
        assert "fallback_reason" not in bundle.meta
        return bundle.architecture

    readers = Readers(load)
    switches = interleave(SWITCHER, [str(src), str(root), "24", "4"], readers, lambda i: names[i % 2])
    loads = [v for _, v, e in readers.records if not e]
    print(f"\n{switches} version switches under {len(loads)} whole loads by 3 readers, {len(readers.errors())} errors")
    assert not readers.errors(), readers.errors()[:3]
    assert switches == 24 and set(loads) == set(names)


RAPID_SAVER = textwrap.dedent(
    r"""
    import numpy as np
    from musiclust.serving import checkpoint as ckpt
    root, n, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    bursts(n, every, lambda i: ckpt.save(root, "m", ckpt.Checkpoint({"value": i, "versions": {}},
                                                                    {"w": np.full(2_000_000, i, np.float32)}, {"a": np.arange(3) + i})))
    """
)


def test_readers_during_back_to_back_saves_get_whole_versions(tmp_path):
    """Saves back to back (8 MB each, bursts of 10) prune the version a reader has just resolved: the reader
    must get a whole version, not fail, and never an older one than it read before. (Before
    ``checkpoint.load_version`` read through handles opened up front and ``load`` re-read a switched
    version, about one load in ten failed with 'arrays.safetensors is missing'.)"""
    root = tmp_path / "checkpoints"
    ckpt.save(root, "m", ckpt.Checkpoint({"value": 0, "versions": {}}, {"w": np.zeros(2_000_000, np.float32)}, {"a": np.arange(3)}))
    seen_by_thread: dict[int, list[int]] = {}

    def load() -> int:
        c = ckpt.load(root, "m", fallback=False)
        value = c.meta["value"]
        if not (np.all(c.weights["w"] == value) and np.array_equal(c.arrays["a"], np.arange(3) + value)):
            raise AssertionError(f"version {value} is not whole")
        seen_by_thread.setdefault(threading.get_ident(), []).append(value)
        return value

    readers = Readers(load)
    saves = interleave(RAPID_SAVER, [str(root), "40", "10"], readers, lambda i: i)
    print(f"\n{saves} back-to-back saves under {len(readers.records)} loads, {len(readers.errors())} errors")
    assert not readers.errors(), readers.errors()[:3]
    assert saves == 40
    for values in seen_by_thread.values():
        assert values == sorted(values), "a reader went back to an older version"


CACHE_WRITER = textwrap.dedent(
    r"""
    from pathlib import Path
    from musiclust.features.mel import FeatureStore
    cache, entry, a, b, n, every = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    store = FeatureStore(Path(cache))
    feats = [store._read(Path(a)), store._read(Path(b))]  # the test's own features: the same bits by construction
    bursts(n, every, lambda i: store._write(entry, feats[i % 2]))
    """
)


def test_readers_never_see_half_a_cache_entry(real_clip_paths, tmp_path):
    """A feature-cache entry rewritten 40 times (two real tracks alternately, bursts of 10) under three
    readers: every read is one whole entry, never missing, mixed or partial; no temporary file is left."""
    a, b = real_clip_paths[0], real_clip_paths[1]
    want = {0: compute_features(a), 1: compute_features(b)}
    store = FeatureStore(tmp_path / "cache")
    entry = tmp_path / "cache" / "x" / "entry.npz"
    store._write(entry, want[0])
    sources = [tmp_path / "a.npz", tmp_path / "b.npz"]  # what the writer process writes, computed here once
    for source, features in zip(sources, want.values()):
        store._write(source, features)

    def read() -> int:
        got = store._read(entry)
        if got is None:
            raise AssertionError("an entry that exists read as missing or damaged")
        match = [k for k, f in want.items() if got.mel_db.shape == f.mel_db.shape and np.array_equal(got.mel_db, f.mel_db)
                 and np.array_equal(got.mfcc_stats, f.mfcc_stats)]
        if not match:
            raise AssertionError("a mixed or partial entry")
        return match[0]

    readers = Readers(read)
    writes = interleave(CACHE_WRITER, [str(tmp_path / "cache"), str(entry), *map(str, sources), "40", "10"], readers, lambda i: i % 2)
    print(f"\n{writes} cache rewrites under {len(readers.records)} reads, {len(readers.errors())} bad")
    assert not readers.errors(), readers.errors()[:3]
    assert writes == 40
    assert not list(entry.parent.glob("*.tmp")), "no temporary files left behind"


# --- the browser soak ----------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']"
CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot"
# Every browser wait is a guard against a hang, never a speed verdict: with eight sessions on a 2-core
# machine busy with other work, one click took over 30 s. Set as each page's default timeout too.
HANG_MS = 300_000
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
    await page.wait_for_selector(IDLE, timeout=timeout)
    await page.wait_for_function("() => document.querySelectorAll(\"[data-stale='true']\").length === 0", timeout=timeout)


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
            target = await page.evaluate(POINT_JS, CHART)
            assert target, f"session {index}: the map has no points"
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
def test_eight_sessions_upload_and_browse_at_once(trained_checkpoints, real_music_folder, real_clip_paths, tmp_path):
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
