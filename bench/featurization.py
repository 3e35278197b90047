"""Figure 1: featurization throughput (clips/s, one core and two) beside the floor and librosa's defaults.

* **ours**: :func:`musiclust.features.mel.compute_features` — decode, validate, mono, resample to 22,050 Hz,
  log-mel (128 bands, 2048/512) and MFCC statistics: everything the cache stores per track.
* **floor**: decode with soundfile, mix to mono, and a bare rFFT power spectrogram with the same window
  and hop (2048/512, Hann, centred) at the file's own rate — no resampling, no mel, no dB. Whichever of
  ``numpy.fft`` / ``scipy.fft`` is faster on this machine is used (both are pocketfft; which one is
  reported), so the floor is never handicapped.
* **librosa**: ``librosa.load(path, sr=22050)`` + ``librosa.feature.melspectrogram`` with defaults.
* **ours_v1** (WAV only): ``compute_features`` with ``FeatureConfig(features_version=1)``, the float64 FFT
  and scipy's MFCC calls that version 2 replaced, so the trade-off is re-measured in every run; beside it,
  each version's largest distance from librosa's ``melspectrogram`` -> ``power_to_db`` on the run's clips
  (``fidelity``: anywhere, and in bands within 60 dB of their frame's total).

Speed ratios are throughput ratios (ours clips/s over the reference's). Each call's thread CPU time is
recorded too: on a busy machine the CPU-time ratios are the steadier of the two.

One core: one worker process pinned to CPU 0. Two cores: two worker processes, one per CPU, each
taking half the clips at the same time; clips/s = clips / the slower worker's time. Each worker runs
the three implementations clip by clip in rotating order, so machine noise hits them alike.
"""

from __future__ import annotations

import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from bench.common import Log, goal, make_variants, ratio, run_workers

N_FFT, HOP = 2048, 512
FORMATS = ("wav_44k_stereo", "wav_22k_mono", "ogg", "mp3")
WAV_FORMATS = ("wav_44k_stereo", "wav_22k_mono")
GOAL_FLOOR, GOAL_LIBROSA = 0.7, 1.5


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    import scipy.signal

    return scipy.signal.get_window("hann", n, fftbins=True).astype(np.float32)


def floor_spectrogram(path, fft: Optional[str] = "scipy") -> np.ndarray:
    """Decode + mono + bare rFFT power spectrogram (2048/512, Hann, centred), at the file's own rate."""
    import soundfile as sf

    y, _ = sf.read(str(path), dtype="float32", always_2d=True)
    mono = y[:, 0].copy()
    for c in range(1, y.shape[1]):
        mono += y[:, c]
    if y.shape[1] > 1:
        mono *= np.float32(1.0 / y.shape[1])
    padded = np.pad(mono, N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP] * _hann(N_FFT)
    if fft == "numpy":
        spec = np.fft.rfft(frames, axis=1)
    else:
        import scipy.fft

        spec = scipy.fft.rfft(frames, axis=1)
    return spec.real**2 + spec.imag**2


def librosa_defaults(path, fft: Optional[str] = None) -> np.ndarray:
    """``librosa.load(sr=22050)`` + ``melspectrogram`` with its defaults."""
    import librosa

    y, sr = librosa.load(str(path), sr=22050)
    return librosa.feature.melspectrogram(y=y, sr=sr)


def ours(path, fft: Optional[str] = None, features_version: int = 2):
    """musiclust's featurization of one file (no cache): what every cache miss costs."""
    from musiclust.config import FeatureConfig
    from musiclust.features.mel import compute_features

    return compute_features(Path(path), FeatureConfig(features_version=features_version))


def ours_v1(path, fft: Optional[str] = None):
    """The same with ``features_version=1`` (float64 FFT, scipy's DCT and Savitzky-Golay calls)."""
    return ours(path, fft, features_version=1)


IMPLEMENTATIONS = {"floor": floor_spectrogram, "librosa": librosa_defaults, "ours": ours, "ours_v1": ours_v1}
EXTRA_IMPLEMENTATIONS = {"ours_v1": WAV_FORMATS}  # timed on these formats only


def fidelity(paths: Sequence[Path], loud_within_db: float = 60.0) -> dict:
    """Largest |dB| between each features version's log-mel and librosa's, over ``paths`` (22,050 Hz files)."""
    import librosa

    from musiclust.config import FeatureConfig
    from musiclust.features.audio import load_audio
    from musiclust.features.mel import log_mel

    worst: dict = {}
    for path in paths:
        y = load_audio(Path(path))
        power = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=N_FFT, hop_length=HOP, n_mels=128, fmax=11025.0)
        ref = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
        loud = 10 * np.log10(power.sum(axis=0, keepdims=True)) - 10 * np.log10(np.maximum(power, 1e-30)) <= loud_within_db
        for version in (1, 2):
            error = np.abs(log_mel(y, FeatureConfig(features_version=version)) - ref)
            w = worst.setdefault(f"v{version}", {"max_abs_db": 0.0, "max_abs_db_loud": 0.0})
            w["max_abs_db"] = max(w["max_abs_db"], float(error.max()))
            w["max_abs_db_loud"] = max(w["max_abs_db_loud"], float(error[loud].max()))
    return {"clips": len(paths), "loud_within_db": loud_within_db, **worst}


def choose_floor_fft(path) -> str:
    """The faster rFFT library for the floor on this machine (median of 3 each)."""
    best = {}
    for name in ("numpy", "scipy"):
        floor_spectrogram(path, fft=name)
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            floor_spectrogram(path, fft=name)
            runs.append(time.perf_counter() - t)
        best[name] = float(np.median(runs))
    return min(best, key=best.get)


def _throughput(results: list[dict], fmt: str, impl: str) -> tuple[float, float]:
    """clips/s and mean seconds per clip of ``impl`` over workers that ran at the same time."""
    n = sum(len(r["times"][fmt][impl]) for r in results)
    slowest = max(sum(r["times"][fmt][impl]) for r in results)
    per_clip = float(np.mean([t for r in results for t in r["times"][fmt][impl]]))
    return n / slowest, per_clip


def run(clips: Sequence[Path], rounds: int, log: Log, cores: Sequence[int] = (1, 2)) -> dict:
    impls = ["floor", "librosa", "ours"]
    with tempfile.TemporaryDirectory(prefix="musiclust-bench-") as tmp:
        log(f"featurization: converting {len(clips)} real clips to 44.1 kHz stereo WAV, 22,050 Hz mono WAV, OGG, MP3")
        variants = make_variants(clips, Path(tmp))
        rows, ratios, floor_fft = [], {}, set()
        log(f"featurization: fidelity of both features versions against librosa on {len(clips)} 22,050 Hz clips")
        fid = fidelity(variants["wav_22k_mono"])
        for n_cores in cores:
            log(f"featurization: {n_cores} core(s), {len(clips)} clips x {len(FORMATS)} formats x {rounds} round(s)")
            tasks = [
                {"kind": "featurize", "impls": impls, "extra_impls": {k: list(v) for k, v in EXTRA_IMPLEMENTATIONS.items()}, "cpu": i, "rounds": rounds,
                 "files": {fmt: [str(p) for p in variants[fmt]][i::n_cores] for fmt in FORMATS}}
                for i in range(min(n_cores, len(clips)))
            ]
            results = run_workers(tasks)
            floor_fft.update(r["floor_fft"] for r in results)
            for fmt in FORMATS:
                speeds, cpu = {}, {}
                for impl in impls + [x for x, fmts in EXTRA_IMPLEMENTATIONS.items() if fmt in fmts]:
                    clips_per_s, per_clip = _throughput(results, fmt, impl)
                    speeds[impl] = clips_per_s
                    cpu[impl] = float(np.median([t for r in results for t in r["cpu"][fmt][impl]]))
                    rows.append({"format": fmt, "cores": n_cores, "impl": impl, "clips_per_s": clips_per_s,
                                 "ms_per_clip": per_clip * 1000, "cpu_ms_per_clip_p50": cpu[impl] * 1000})
                ratios.setdefault(fmt, {})[str(n_cores)] = {
                    f"{impl}_vs_{ref}{suffix}": ratio(*((speeds[impl], speeds[ref]) if not suffix else (cpu[ref], cpu[impl])))
                    for impl in speeds if impl.startswith("ours") for ref in ("floor", "librosa") for suffix in ("", "_cpu")
                }
    wav = [ratios[f][str(c)] for f in WAV_FORMATS for c in cores]
    worst_floor = min(r["ours_vs_floor"] for r in wav)
    worst_librosa = min(r["ours_vs_librosa"] for r in wav)
    return {
        "clips": len(clips),
        "rounds": rounds,
        "clip_seconds": _mean_duration(clips),
        "floor_fft": sorted(floor_fft),
        "fidelity": fid,
        "rows": rows,
        "ratios": ratios,
        "goals": {
            "vs_floor_wav": goal(f">= {GOAL_FLOOR}x the floor on WAV (worst WAV case {worst_floor:.2f}x)", worst_floor >= GOAL_FLOOR),
            "vs_librosa_wav": goal(f">= {GOAL_LIBROSA}x librosa's defaults on WAV (worst WAV case {worst_librosa:.2f}x)", worst_librosa >= GOAL_LIBROSA),
        },
    }


def _mean_duration(clips: Sequence[Path]) -> float:
    import soundfile as sf

    return float(np.mean([sf.info(str(c)).duration for c in clips])) if clips else 0.0
