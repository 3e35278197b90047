"""Concurrency, tried for real.

- Eight retrain requests released at the same instant (four threads of one app process, four other
  processes): exactly one runs, every other one is told a retrain is already running.
- Readers loading real model checkpoints while another process switches versions, a fixed number of
  times in back-to-back bursts: every load is whole (weights, arrays and manifest of one and the same
  save), never an error, never a fallback, and a load started after a switch reads the new version.
  The same for 8 MB saves that prune what readers resolve, and for feature-cache entries rewritten
  under readers. Nothing is counted per second, so the verdict does not depend on the machine's speed.
- The browser soak is in ``test_soak.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from musiclust.serving import checkpoint as ckpt
from musiclust.serving.bundle import ModelBundle
from musiclust.errors import JobBusyError
from musiclust.features.mel import FeatureStore, compute_features
from musiclust.serving.jobs import RUNNING, RetrainJobs
from musiclust.service import dataset_slug
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

