"""Audio features: log-mel spectrograms, MFCC statistics and fixed-size model segments.

Feature functions are pure (array in, array out) and named after the concept, as in librosa.
:class:`FeatureStore` caches them on disk keyed by the file's content and the feature parameters,
so a second run recomputes nothing and a changed file is recomputed.
"""

from __future__ import annotations

import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import librosa
import numpy as np

from musiclust.features.audio import AudioSource, load_audio
from musiclust.features.hashes import HashIndex, HashStamp, content_hash
from musiclust.config import FeatureConfig
from musiclust.errors import AudioError, MusiclustError, ParameterError
from musiclust.store.durable import save_npz_atomic

ProgressFn = Callable[[int, int], None]
HASH_SAVE_SECONDS = 60.0  # a long scan writes the content hashes it learned this often (and at its end)


STFT_BLOCK_FRAMES = 64  # frames transformed at once: 0.5 MB of float32 (1 MB of float64), stays in the CPU cache
MEL_GROUP = 16  # mel bands multiplied together over the FFT bins any of them covers
DB_PER_OCTAVE = np.float32(10.0 * np.log10(2.0))  # 10 log10(x) = this x log2(x); numpy's float32 log2 is ~2x its log10
# features_version -> the FFT's float type (musiclust.config.FeatureConfig.features_version)
FFT_DTYPE = {1: np.float64, 2: np.float32}


@lru_cache(maxsize=8)
def _mel_bands(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> tuple:
    """librosa's (Slaney) mel filter bank as dense slices of its non-zero part, built once per config.

    Each filter is non-zero on a short run of FFT bins (~2,000 of 131,200 weights for 128 bands over
    1,025 bins), so multiplying ``MEL_GROUP`` bands at a time by only the bins they cover skips ~85 % of
    a dense product's work. Returns ``((m0, m1, k0, k1, weights (k1 - k0, m1 - m0) float32), ...)``.
    """
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32).T
    bands = []
    for m0 in range(0, n_mels, MEL_GROUP):
        m1 = min(n_mels, m0 + MEL_GROUP)
        bins = np.flatnonzero((basis[:, m0:m1] != 0).any(axis=1))
        k0, k1 = (int(bins[0]), int(bins[-1]) + 1) if bins.size else (0, 0)
        weights = np.ascontiguousarray(basis[k0:k1, m0:m1])
        weights.setflags(write=False)
        bands.append((m0, m1, k0, k1, weights))
    return tuple(bands)


@lru_cache(maxsize=8)
def _hann(n_fft: int, dtype: type = np.float64) -> np.ndarray:
    window = librosa.filters.get_window("hann", n_fft, fftbins=True).astype(dtype)
    window.setflags(write=False)
    return window


def mel_power(y: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Mel power spectrogram ``(T, n_mels)`` float32 — ``librosa.feature.melspectrogram(power=2)``'s
    values (centred frames, zero padding, Hann window, Slaney mel), transposed.

    Computed block by block, without copying the audio into frames (a strided view) or the spectrum
    into a power array (squared in place): window into a reused buffer, ``scipy.fft.rfft``, |X|^2, then
    the mel product over each band group's non-zero bins only. librosa frames the whole clip, windows
    and transforms it in float64, rebuilds the filter bank on every call and applies it densely.

    The FFT's precision is ``config.features_version``'s: version 2 (the default) transforms in float32,
    ~1.6x faster than float64 here. Its rounding error is relative to the whole frame's energy, so it
    shows only in bands ~80 dB below the rest of their frame (the top bands of a soundfont render), by at
    most ~2e-3 dB against librosa's float64 values (tests/test_features.py, docs/benchmark.md). Version 1
    (float64, within 1e-5 dB) is what checkpoints made before version 2 existed were trained on.
    """
    import scipy.fft

    dtype = FFT_DTYPE[config.features_version]
    n_fft, hop = config.n_fft, config.hop_length
    bands = _mel_bands(config.sample_rate, n_fft, config.n_mels, config.fmin, config.fmax)
    window = _hann(n_fft, dtype)
    padded = np.pad(y, n_fft // 2)  # librosa's center=True with pad_mode="constant"
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # (T, n_fft), a view: no copy
    mel = np.empty((frames.shape[0], config.n_mels), np.float32)
    buffer = np.empty((min(STFT_BLOCK_FRAMES, frames.shape[0]), n_fft), dtype)
    for start in range(0, frames.shape[0], STFT_BLOCK_FRAMES):
        block = frames[start : start + STFT_BLOCK_FRAMES]
        windowed = np.multiply(block, window, out=buffer[: len(block)])
        spectrum = scipy.fft.rfft(windowed, axis=1, overwrite_x=True)  # (b, bins) complex of the buffer's precision
        parts = spectrum.view(dtype)  # real and imaginary parts interleaved
        np.square(parts, out=parts)
        power = np.add(parts[:, 0::2], parts[:, 1::2]).astype(np.float32, copy=False)  # |X|^2, (b, bins)
        out = mel[start : start + len(block)]
        for m0, m1, k0, k1, weights in bands:
            np.matmul(power[:, k0:k1], weights, out=out[:, m0:m1])
    return mel


def log_mel(y: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Log-power mel spectrogram in dB, ``(n_mels, T)`` float32.

    An absolute reference (``ref=1.0``) keeps loudness comparable across tracks; ``amin`` floors
    digital silence at -100 dB instead of -inf (``librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None)``).
    """
    if y.ndim != 1:
        raise ParameterError(f"log_mel expects mono audio (n,), got shape {y.shape}")
    mel = mel_power(y, config)  # (T, n_mels)
    np.maximum(mel, np.float32(1e-10), out=mel)
    if config.features_version == 1:
        np.log10(mel, out=mel)
        mel *= np.float32(10.0)
    else:  # the same dB to ~1e-5 dB (float32 rounding), in less than half the time
        np.log2(mel, out=mel)
        mel *= DB_PER_OCTAVE
    return np.ascontiguousarray(mel.T)


def mfcc_statistics(mel_db: np.ndarray, n_mfcc: int = 20, features_version: int = 2) -> np.ndarray:
    """Mean and standard deviation of MFCCs and their deltas: ``(4 * n_mfcc,)``.

    The classic timbre summary, used as a baseline the VAEs must beat. What ``librosa.feature.mfcc(S=mel_db)``
    and ``librosa.feature.delta`` compute, without importing ``librosa.feature`` (~1.2 s of numba set-up in
    every fresh process: the first upload, each worker). ``features_version`` 1 makes their scipy calls
    (a full DCT, ``savgol_filter``); 2 (``FeatureConfig.features_version``'s default) gets the same values to
    float32 rounding in a quarter of the time (:func:`_mfcc`, :func:`_delta`).
    """
    if mel_db.ndim != 2:
        raise ParameterError(f"mfcc_statistics expects (n_mels, T), got shape {mel_db.shape}")
    import scipy.fft
    import scipy.signal

    frames = mel_db.shape[1]
    width = max(3, min(9, frames - (1 - frames % 2)))  # delta needs an odd width <= T
    if features_version == 1:
        mfcc = scipy.fft.dct(mel_db, axis=-2, type=2, norm="ortho")[:n_mfcc]  # (n_mfcc, T)
        delta = scipy.signal.savgol_filter(mfcc, width, deriv=1, polyorder=1, axis=-1, mode="interp") if frames >= 3 else np.zeros_like(mfcc)
    else:
        mfcc = _mfcc(mel_db, n_mfcc)
        delta = _delta(mfcc, width) if frames >= 3 else np.zeros_like(mfcc)
    stats = [mfcc.mean(axis=1), mfcc.std(axis=1), delta.mean(axis=1), delta.std(axis=1)]
    return np.concatenate(stats).astype(np.float32)


@lru_cache(maxsize=8)
def _dct_rows(n_mels: int, n_mfcc: int) -> np.ndarray:
    """The first ``n_mfcc`` rows of the orthonormal DCT-II matrix (scipy's), float32."""
    import scipy.fft

    rows = scipy.fft.dct(np.eye(n_mels), axis=0, type=2, norm="ortho")[:n_mfcc].astype(np.float32)
    rows.setflags(write=False)
    return rows


def _mfcc(mel_db: np.ndarray, n_mfcc: int) -> np.ndarray:
    """``dct(mel_db, type=2, norm="ortho", axis=0)[:n_mfcc]`` as one product with the rows kept: the
    full transform computes all n_mels coefficients along the strided axis to keep 20."""
    return _dct_rows(mel_db.shape[0], n_mfcc) @ mel_db


@lru_cache(maxsize=8)
def _delta_coeffs(width: int) -> np.ndarray:
    import scipy.signal

    return scipy.signal.savgol_coeffs(width, 1, deriv=1).astype(np.float32)


def _delta(mfcc: np.ndarray, width: int) -> np.ndarray:
    """``savgol_filter(mfcc, width, deriv=1, polyorder=1, mode="interp", axis=-1)`` (librosa's delta).

    Inside, the filter is the convolution it makes. At each edge, ``"interp"`` fits a straight line to the
    first (last) ``width`` frames and takes its slope, which for a line is the filter's output at that
    window's centre: the centre value is repeated instead of refitting (scipy's polyfit is ~3/4 of its time).
    """
    import scipy.ndimage

    half = width // 2
    delta = scipy.ndimage.convolve1d(mfcc, _delta_coeffs(width), axis=-1, mode="constant")
    delta[:, :half] = delta[:, half : half + 1]
    delta[:, -half:] = delta[:, -half - 1 : -half]
    return delta


def segments(mel_db: np.ndarray, frames: int) -> np.ndarray:
    """Cut ``(n_mels, T)`` into non-overlapping ``(n_segments, n_mels, frames)`` windows.

    A track shorter than one window is tiled (repeated) to fill it, so every track gives at least one
    segment without inventing silence; a trailing partial window is dropped.
    """
    if mel_db.ndim != 2 or mel_db.shape[1] == 0:
        raise ParameterError(f"segments expects a non-empty (n_mels, T), got shape {mel_db.shape}")
    if frames <= 0:
        raise ParameterError(f"frames must be positive, got {frames}")
    n_mels, total = mel_db.shape
    if total < frames:
        reps = -(-frames // total)
        mel_db = np.tile(mel_db, (1, reps))[:, :frames]
        total = frames
    count = total // frames
    return np.ascontiguousarray(mel_db[:, : count * frames].reshape(n_mels, count, frames).transpose(1, 0, 2))


@dataclass(frozen=True)
class TrackFeatures:
    """Everything the models and baselines need from one audio file."""

    mel_db: np.ndarray  # (n_mels, T) float32, dB
    mfcc_stats: np.ndarray  # (4 * n_mfcc,) float32
    duration: float  # seconds of audio featurized


def compute_features(source: AudioSource, config: FeatureConfig = FeatureConfig()) -> TrackFeatures:
    """Decode, validate and featurize one file or upload (raises :class:`AudioError` on bad audio)."""
    return audio_features(load_audio(source, config), config)


def audio_features(y: np.ndarray, config: FeatureConfig = FeatureConfig()) -> TrackFeatures:
    """Featurize decoded audio ``y`` (mono, ``config.sample_rate``, from :func:`load_audio`): what
    :func:`compute_features` does after decoding, for a caller that reads the same samples twice."""
    mel = log_mel(y, config)
    stats = mfcc_statistics(mel, config.n_mfcc, config.features_version)
    if not (np.isfinite(mel).all() and np.isfinite(stats).all()):  # defence in depth: never hand NaN to a model
        raise AudioError("the audio's spectrum is not finite (sample values far beyond full scale?)")
    return TrackFeatures(mel, stats, len(y) / config.sample_rate)


@dataclass
class FeatureReport:
    """What a batch featurization did: per-path features, and the files it had to skip (with why)."""

    features: dict = field(default_factory=dict)  # path (str) -> TrackFeatures
    failed: dict = field(default_factory=dict)  # path (str) -> reason
    computed: int = 0
    cached: int = 0

    def add(self, path: Path, result) -> bool:
        """Record one file's outcome: a reason (str) it failed, or ``(features, was_cached)``. True when
        the features were computed now (not read from the cache)."""
        if isinstance(result, str):
            self.failed[str(path)] = result
            return False
        features, was_cached = result
        self.features[str(path)] = features
        self.cached += was_cached
        self.computed += not was_cached
        return not was_cached

    @property
    def done(self) -> int:
        return len(self.features) + len(self.failed)


class FeatureStore:
    """On-disk cache of :class:`TrackFeatures`, one ``.npz`` per (file content, feature parameters).

    Entries are written atomically (temp file + rename), so a reader never sees half an entry, and
    loaded without pickle; an entry that fails to load (cut short, corrupt) is recomputed, not trusted.
    The content hash of a file whose stamp (path, size, times, inode) is unchanged since it was last
    hashed comes from a small index beside the entries (:mod:`musiclust.features.hashes`), so a rescan of
    an unchanged library reads only the cache entries, not the audio.
    """

    def __init__(self, root: Path, config: FeatureConfig = FeatureConfig()):
        self.root = Path(root)
        self.config = config
        self.hashes = HashIndex(self.root / "content-hashes")

    def _entry(self, digest: str) -> Path:
        return self.root / self.config.fingerprint() / digest[:2] / f"{digest}.npz"

    def _read(self, entry: Path) -> Optional[TrackFeatures]:
        try:
            with np.load(entry, allow_pickle=False) as data:
                mel = data["mel_db"]
                stats = data["mfcc_stats"]
                duration = float(data["duration"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, EOFError, MemoryError, zipfile.BadZipFile):
            return None  # truncated or corrupt: recompute
        if mel.ndim != 2 or mel.shape[0] != self.config.n_mels or stats.shape != (4 * self.config.n_mfcc,):
            return None
        if mel.dtype != np.float32 or stats.dtype != np.float32 or mel.shape[1] == 0:
            return None  # written by something else: recompute
        if not (np.isfinite(mel).all() and np.isfinite(stats).all() and np.isfinite(duration) and duration > 0):
            return None  # a crafted or bit-rotted entry: never hand NaN/Inf to a model
        return TrackFeatures(mel, stats, duration)

    def _write(self, entry: Path, features: TrackFeatures) -> None:
        save_npz_atomic(entry, mel_db=features.mel_db, mfcc_stats=features.mfcc_stats, duration=features.duration)

    def _known(self, path: Path) -> tuple[Optional[HashStamp], Optional[str]]:
        """``path``'s stamp and its remembered digest (None when it must be hashed); one ``stat``."""
        try:
            stamp = HashStamp.of(path)
        except OSError:
            return None, None  # missing or unreadable: hashing it says why
        return stamp, self.hashes.lookup(stamp)

    def _digest(self, path: Path, stamp: Optional[HashStamp], digest: Optional[str]):
        """``path``'s digest, and ``(stamp, digest, started_ns)`` to remember if it had to be read for it."""
        if digest is not None:
            return digest, None
        started = time.time_ns()
        digest = content_hash(path)
        return digest, ((stamp, digest, started) if stamp is not None else None)

    def _features(self, path: Path, digest: str) -> tuple[TrackFeatures, bool]:
        entry = self._entry(digest)
        cached = self._read(entry)
        if cached is not None:
            return cached, True
        features = compute_features(path, self.config)
        self._write(entry, features)
        return features, False

    def _remember(self, learned) -> None:
        if learned is not None:
            self.hashes.remember(*learned)

    def _save_hashes(self) -> None:
        try:
            self.hashes.save()
        except OSError:
            pass  # an index that cannot be written only means hashing these files again next time

    def get(self, path: Path) -> tuple[TrackFeatures, bool]:
        """Features of ``path`` and whether they came from the cache."""
        path = Path(path)
        digest, learned = self._digest(path, *self._known(path))
        if learned is not None:
            self._remember(learned)
            self._save_hashes()
        return self._features(path, digest)

    def get_many(
        self, paths: Sequence[Path], jobs: int = 1, progress: Optional[ProgressFn] = None
    ) -> FeatureReport:
        """Featurize many files in ``jobs`` processes; a file that fails is reported, never fatal."""
        report = FeatureReport()
        paths = [Path(p) for p in paths]
        known = {p: self._known(p) for p in paths}  # stamps and remembered digests, here: workers only hash
        bar = _terminal_bar(len(paths), "features") if progress is None else None
        last_save = time.monotonic()

        def record(path: Path, outcome) -> None:
            nonlocal last_save
            result, learned = outcome
            self._remember(learned)
            if self.hashes.unsaved and time.monotonic() - last_save > HASH_SAVE_SECONDS:
                self._save_hashes()
                last_save = time.monotonic()
            report.add(path, result)
            if progress is not None:
                progress(report.done, len(paths))
            elif bar is not None:
                bar.update(1)

        try:
            if jobs <= 1 or len(paths) < 2:
                for path in paths:
                    record(path, _get_or_reason(self, path, *known[path]))
            else:
                with ProcessPoolExecutor(max_workers=jobs) as pool:
                    futures = {pool.submit(_get_or_reason, self, path, *known[path]): path for path in paths}
                    for future in as_completed(futures):
                        record(futures[future], future.result())
        finally:
            self._save_hashes()
            if bar is not None:
                bar.close()
        report.features = {str(p): report.features[str(p)] for p in paths if str(p) in report.features}
        return report


def _get_or_reason(store: FeatureStore, path: Path, stamp: Optional[HashStamp] = None, digest: Optional[str] = None):
    """Worker body: ``((features, cached) or the reason they could not be made, what it hashed)``, picklable."""
    learned = None
    try:
        digest, learned = store._digest(path, stamp, digest)
        return store._features(path, digest), learned
    except MusiclustError as exc:
        return str(exc), learned
    except OSError as exc:
        return f"{path.name} could not be read: {exc.strerror or exc}", learned


def _terminal_bar(total: int, desc: str):
    """A tqdm bar when a person is watching a terminal; nothing otherwise."""
    if total < 2 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip")
