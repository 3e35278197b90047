"""Shared pieces of the benchmark: inputs made from real clips, clean worker processes, timing.

Every figure is measured beside a reference taken in the same run on the same machine, because these
machines are noisy: a ratio to something measured a minute ago means more than an absolute time.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_CLIPS = REPO / "data" / "default" / "natural"
RENDERED_CLIPS = REPO / "data" / "cache" / "bench-clips"  # fallback when the default set is not rendered
SINGLE_THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}

Log = Callable[[str], None]


def log_to_stderr(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- summary statistics ----------------------------------------------------------------------------
def summary(values: Sequence[float]) -> dict:
    """p50 / p95 / mean / min / max of a list of numbers (seconds or anything else)."""
    a = np.asarray(list(values), dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return None
    return float(a / b)


def goal(text: str, met: Optional[bool]) -> dict:
    return {"text": text, "met": None if met is None else bool(met)}


# --- the machine -----------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_gb = psutil.virtual_memory().total / 2**30
    except ImportError:  # pragma: no cover - psutil is a dependency
        memory_gb = float("nan")
    versions = {}
    for module in ("numpy", "scipy", "librosa", "soundfile", "soxr", "torch", "streamlit", "plotly"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is reported, not fatal
            versions[module] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(memory_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
        "versions": versions,
        "git_commit": _git_commit(),
    }


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# --- inputs: real clips ----------------------------------------------------------------------------
def find_clips(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted: the real music every figure is measured on."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") and p.is_file())


def full_length(paths: Sequence[Path], seconds: float) -> list[Path]:
    """The clips at least ``seconds`` long (header only)."""
    import soundfile as sf

    keep = []
    for p in paths:
        try:
            info = sf.info(str(p))
        except Exception:  # noqa: BLE001 - an unreadable file is simply not an input
            continue
        if info.frames / info.samplerate >= seconds:
            keep.append(p)
    return keep


def spread(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` paths taken evenly across the (group-sorted) list, so every group of music is represented."""
    paths = list(paths)
    if n >= len(paths):
        return paths
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in dict.fromkeys(idx.tolist())]


def render_some(n: int, log: Log) -> list[Path]:
    """Render ``n`` manifest clips (spread over the groups) when the default set is not there yet."""
    import csv

    from musiclust.data.corpus import render_clip

    RENDERED_CLIPS.mkdir(parents=True, exist_ok=True)
    with open(REPO / "data" / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows = [r for r in rows if float(r.get("duration_s") or 0) >= 30.0] or rows
    chosen = [rows[i] for i in np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)]
    out = []
    for row in chosen:
        path = RENDERED_CLIPS / f"{row['id']}.wav"
        if not path.is_file():
            log(f"rendering {row['id']} (the default set is not rendered yet)")
            try:
                render_clip(row, "natural", None, path)
            except Exception as exc:  # noqa: BLE001 - a clip that fails to render is skipped
                log(f"  skipped: {exc}")
                continue
        out.append(path)
    return out


def make_variants(clips: Sequence[Path], folder: Path) -> dict[str, list[Path]]:
    """The same real clips as the files people have: 44.1 kHz stereo WAV, 22,050 Hz mono WAV, OGG, MP3.

    The stereo version is upsampled with soxr; its right channel is a slightly delayed, quieter copy so
    the two channels differ as in a real mix. OGG and MP3 are 44.1 kHz stereo (as such files usually are).
    """
    import soundfile as sf
    import soxr

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {"wav_44k_stereo": [], "wav_22k_mono": [], "ogg": [], "mp3": []}
    for clip in clips:
        y, sr = sf.read(str(clip), dtype="float32", always_2d=True)
        mono = y.mean(axis=1)
        up = soxr.resample(mono, sr, 44100, quality="HQ") if sr != 44100 else mono
        stereo = np.stack([up, 0.9 * np.roll(up, 11)], axis=1).astype(np.float32)
        peak = float(np.abs(stereo).max()) or 1.0
        stereo = stereo / max(1.0, peak / 0.99)
        low = soxr.resample(mono, sr, 22050, quality="HQ") if sr != 22050 else mono
        stem = clip.stem
        targets = (
            ("wav_44k_stereo", folder / f"{stem}.44k.wav", stereo, 44100, "WAV", "PCM_16"),
            ("wav_22k_mono", folder / f"{stem}.22k.wav", low, 22050, "WAV", "PCM_16"),
            ("ogg", folder / f"{stem}.ogg", stereo, 44100, "OGG", "VORBIS"),
            ("mp3", folder / f"{stem}.mp3", stereo, 44100, "MP3", "MPEG_LAYER_III"),
        )
        for key, path, data, rate, fmt, subtype in targets:
            sf.write(str(path), data, rate, format=fmt, subtype=subtype)
            out[key].append(path)
    return out


def distinct_copies(clips: Sequence[Path], n: int, folder: Path) -> list[Path]:
    """``n`` files made from real clips, repeated as needed; each copy has one sample nudged by one LSB, so
    every file has its own content hash and no copy is served from the feature cache."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        clip = clips[i % len(clips)]
        path = folder / f"{i:05d}-{clip.stem}.wav"
        if i < len(clips):
            shutil.copyfile(clip, path)
        else:
            data, sr = sf.read(str(clip), dtype="int16", always_2d=True)
            at = (i * 7919) % len(data)
            data[at, 0] = data[at, 0] + 1 if data[at, 0] < 32767 else data[at, 0] - 1
            sf.write(str(path), data, sr, subtype="PCM_16")
        out.append(path)
    return out


def linear_fit(sizes: Sequence[int], seconds: Sequence[float]) -> Optional[dict]:
    """``total = fixed_s + N x ms_per_track / 1000`` by least squares, and the marginal ms per added track
    between consecutive sizes (None for fewer than two sizes)."""
    if len(sizes) < 2:
        return None
    xs, ts = np.asarray(sizes, float), np.asarray(seconds, float)
    slope, intercept = np.polyfit(xs, ts, 1)
    marginal = [1000 * (ts[i + 1] - ts[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]
    return {"fixed_s": float(intercept), "ms_per_track": float(1000 * slope),
            "max_relative_residual": float(np.max(np.abs(ts - (intercept + slope * xs)) / ts)),
            "marginal_ms_per_track": marginal}


# --- clean worker processes ------------------------------------------------------------------------
def python_env(single_thread: bool = True, extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if single_thread:
        env.update(SINGLE_THREAD_ENV)
    env.update(extra or {})
    return env


@dataclass
class Worker:
    """A benchmark worker process (``python -m bench.worker``): imports and warms up, says
    ``ready``, waits for ``go`` so several workers start together, then reports JSON."""

    proc: subprocess.Popen

    @classmethod
    def start(cls, task: dict, single_thread: bool = True, extra_env: Optional[dict] = None) -> "Worker":
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", json.dumps(task)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=python_env(single_thread, extra_env),
        )
        return cls(proc)

    def wait_ready(self, timeout: float = 300) -> None:
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"benchmark worker failed to start: {line.strip()} {err[-2000:]}")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 3600) -> dict:
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"benchmark worker failed ({self.proc.returncode}): {err[-3000:]}")
        return json.loads(out.strip().splitlines()[-1])


def run_workers(tasks: list[dict], single_thread: bool = True, extra_env: Optional[dict] = None) -> list[dict]:
    """Start one worker per task, release them together once all are warm, collect their reports."""
    workers = [Worker.start(t, single_thread, extra_env) for t in tasks]
    try:
        for w in workers:
            w.wait_ready()
        for w in workers:
            w.go()
        return [w.result() for w in workers]
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
