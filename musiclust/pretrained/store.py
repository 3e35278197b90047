"""MusiCNN embeddings of whole tracks, aligned with the mel segments and cached on disk like the features.

Why aligned: a model that reads a mel segment and the pretrained network's view of *the same three
seconds* needs one pretrained vector per mel segment. The mel segments are ``segment_frames`` frames
at ``hop_length / sample_rate`` (128 x 512 / 22,050 = 2.97 s); MusiCNN patches are 187 frames at
256 / 16,000 (2.99 s). Instead of the wheel's back-to-back patches (whose starts drift 0.02 s per
patch away from the segments'), patch j starts at the MusiCNN frame nearest segment j's start, so
it covers the same audio within one MusiCNN hop (16 ms) at its start and ~30 ms at its end.

Why the same audio: the decoded excerpt comes from :func:`musiclust.features.audio.load_audio` with
the collection's :class:`~musiclust.config.FeatureConfig`, exactly as the mel is made, then is
resampled to 16 kHz (``soxr_hq``) for the network. Whatever excerpt policy the config sets, the
mel and MusiCNN read the same samples.

:class:`PretrainedStore` caches one ``.npz`` per (file content, model, extraction parameters, wheel
version), written atomically by the feature cache's writer and validated on read: a damaged entry
is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from musiclust.config import FeatureConfig
from musiclust.errors import CheckpointError, MusiclustError, ParameterError
from musiclust.features.audio import load_audio
from musiclust.features.mel import FeatureReport, content_hash
from musiclust.paths import PRETRAINED_CACHE
from musiclust.pretrained import musicnn
from musiclust.store.durable import save_npz_atomic

ProgressFn = Callable[[int, int], None]

FORMAT_VERSION = 1  # bump when what an entry holds, or how it is computed, changes
RES_TYPE = "soxr_hq"  # the 22,050 -> 16,000 Hz resampler (see musicnn.musicnn_embedding)
PAD_MODE = "reflect"  # the wheel's training-time framing (see musicnn.musicnn_mel)
# FeatureConfig fields that change only the mel spectrum, not which samples are read or how they are
# cut into segments: left out of the cache key, so tuning the mel does not re-run the network.
_SPECTRUM_ONLY = {"n_mels", "n_fft", "fmin", "fmax", "n_mfcc", "spectrum_version", "features_version"}


@dataclass(frozen=True)
class PretrainedFeatures:
    """One track's MusiCNN view, one row per mel segment (``S`` = the track's mel segment count)."""

    penultimate: np.ndarray  # (S, 200) float32: the network's 200-unit embedding layer
    taggram: np.ndarray  # (S, 50) float32: tag probabilities in [0, 1]
    start_s: np.ndarray  # (S,) float32: where each patch starts in the excerpt, seconds

    @property
    def vectors(self) -> np.ndarray:
        """``(S, 250)``: penultimate and tags side by side, what a model reads per segment."""
        return np.concatenate([self.penultimate, self.taggram], axis=1)

    @property
    def embedding(self) -> np.ndarray:
        """``(200,)``: the track's embedding, the mean of its patches' penultimates."""
        return self.penultimate.mean(axis=0)


@dataclass
class PretrainedReport(FeatureReport):
    """What a batch extraction did: per-path :class:`PretrainedFeatures`, skipped files (with why), and
    the time it took."""

    seconds: float = 0.0  # wall time of the whole call
    compute_seconds: float = 0.0  # wall time summed over the tracks the network ran on (decode + resample + network)
    compute_cpu_seconds: float = 0.0  # CPU time of the same work (what a core spent, whatever the machine's load)


# ----------------------------------------------------------------------------- pure functions
def segment_count(n_samples: int, config: FeatureConfig) -> int:
    """How many mel segments :func:`musiclust.features.mel.segments` cuts from ``n_samples`` samples."""
    if n_samples <= 0:
        raise ParameterError(f"n_samples must be positive, got {n_samples}")
    frames = 1 + n_samples // config.hop_length  # librosa's centred framing
    return max(1, frames // config.segment_frames)


def aligned_patch_starts(n_segments: int, n_frames: int, config: FeatureConfig) -> np.ndarray:
    """The MusiCNN frame where the patch of each mel segment starts: ``(n_segments,)`` int.

    Segment j starts at ``j * segment_frames * hop_length / sample_rate`` seconds; its patch starts at
    the nearest MusiCNN frame (hop 256 at 16 kHz). A patch that would run past the end of the
    ``n_frames``-frame MusiCNN spectrogram is moved back to end with it (the last segment, at most a
    few frames); a spectrogram shorter than one patch gives start 0 (it is tiled, see
    :func:`aligned_features`).
    """
    seconds = np.arange(n_segments) * config.segment_frames * config.hop_length / config.sample_rate
    starts = np.rint(seconds * musicnn.SR / musicnn.HOP).astype(np.int64)
    return np.clip(starts, 0, max(0, n_frames - musicnn.PATCH_FRAMES))


def aligned_features(y: np.ndarray, config: FeatureConfig, model: str = "MTT_musicnn") -> PretrainedFeatures:
    """MusiCNN features of decoded audio ``y`` (mono, ``config.sample_rate``), one patch per mel segment.

    Pure array-in, array-out: resample to 16 kHz, the wheel's log-mel, one 187-frame patch at each
    segment's start (:func:`aligned_patch_starts`), the network. A clip shorter than one patch is tiled
    to one, as the mel segments tile a clip shorter than a segment.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"aligned_features expects non-empty mono audio (n,), got shape {y.shape}")
    n_segments = segment_count(y.size, config)
    y16 = librosa.resample(y, orig_sr=config.sample_rate, target_sr=musicnn.SR, res_type=RES_TYPE)
    mel = musicnn.musicnn_mel(y16.astype(np.float32), pad_mode=PAD_MODE)  # (frames, 96)
    if mel.shape[0] < musicnn.PATCH_FRAMES:
        mel = np.resize(mel, (musicnn.PATCH_FRAMES, mel.shape[1]))  # repeat whole frames, as mel.segments tiles
    starts = aligned_patch_starts(n_segments, mel.shape[0], config)
    patches = mel[starts[:, None] + np.arange(musicnn.PATCH_FRAMES)[None, :]]  # (S, 187, 96)
    penultimate, taggram = musicnn.musicnn_forward(patches, model=model)
    return PretrainedFeatures(
        penultimate.astype(np.float32), taggram.astype(np.float32), (starts * musicnn.HOP / musicnn.SR).astype(np.float32)
    )


def wheel_version() -> str:
    """The installed ``musicnn`` wheel's version (its checkpoints are the weights), or a clear error."""
    try:
        return metadata.version("musicnn")
    except metadata.PackageNotFoundError:
        raise CheckpointError(
            "the pretrained MusiCNN weights are missing: install them with `pip install --no-deps musicnn==0.1.0`"
        ) from None


# ----------------------------------------------------------------------------- the cache
class PretrainedStore:
    """On-disk cache of :class:`PretrainedFeatures`, one ``.npz`` per (file content, extraction key).

    The key holds the model name, the resampler and framing, the feature parameters that decide which
    samples are read and how they are segmented, the entry format and the wheel's version
    (:meth:`fingerprint`). Entries are written atomically and loaded without pickle; an entry that
    fails to load or to validate is recomputed.
    """

    def __init__(self, root: Path = PRETRAINED_CACHE, config: FeatureConfig = FeatureConfig(), model: str = "MTT_musicnn"):
        if model not in musicnn.MODELS:
            raise ParameterError(f"model must be one of {musicnn.MODELS}, not {model!r}")
        self.root = Path(root)
        self.config = config
        self.model = model

    def key(self) -> dict:
        """Everything an entry depends on besides the file's bytes."""
        audio = {k: v for k, v in self.config.to_dict().items() if k not in _SPECTRUM_ONLY}
        return {"format": FORMAT_VERSION, "model": self.model, "musicnn_wheel": wheel_version(),
                "res_type": RES_TYPE, "pad_mode": PAD_MODE, "alignment": "mel-segment-starts", "audio": audio}

    def fingerprint(self) -> str:
        text = json.dumps(self.key(), sort_keys=True)
        return f"{self.model}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def entry(self, digest: str) -> Path:
        return self.root / self.fingerprint() / digest[:2] / f"{digest}.npz"

    def _read(self, entry: Path) -> Optional[PretrainedFeatures]:
        try:
            with np.load(entry, allow_pickle=False) as data:
                pen, tags, start = data["penultimate"], data["taggram"], data["start_s"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, EOFError, MemoryError, zipfile.BadZipFile):
            return None  # truncated or corrupt: recompute
        s = pen.shape[0] if pen.ndim == 2 else -1
        if s < 1 or pen.shape[1] != 200 or tags.shape != (s, 50) or start.shape != (s,):
            return None
        if any(a.dtype != np.float32 for a in (pen, tags, start)):
            return None  # written by something else: recompute
        if not (np.isfinite(pen).all() and np.isfinite(start).all() and ((tags >= 0) & (tags <= 1)).all()):
            return None  # bit-rotted or crafted: never hand NaN to a model
        return PretrainedFeatures(pen, tags, start)

    def compute(self, path: Path) -> PretrainedFeatures:
        """Run the extraction for one file, without the cache."""
        return aligned_features(load_audio(Path(path), self.config), self.config, self.model)

    def get(self, path: Path) -> tuple[PretrainedFeatures, bool]:
        """Features of ``path`` and whether they came from the cache."""
        entry = self.entry(content_hash(Path(path)))
        cached = self._read(entry)
        if cached is not None:
            return cached, True
        features = self.compute(path)
        save_npz_atomic(entry, penultimate=features.penultimate, taggram=features.taggram, start_s=features.start_s)
        return features, False

    def get_many(self, paths: Sequence[Path], jobs: int = 1, progress: Optional[ProgressFn] = None) -> PretrainedReport:
        """Extract many files in ``jobs`` processes (each runs the network on one thread); a file that
        fails is reported with its reason, never fatal. ``progress(done, total)`` after every file."""
        if not isinstance(jobs, int) or jobs < 1:
            raise ParameterError(f"jobs must be a positive integer, got {jobs!r}")
        started = time.perf_counter()
        self.key()  # a missing wheel is one clear error here, not one per file
        report = PretrainedReport()
        paths = [Path(p) for p in paths]

        def record(path: Path, outcome) -> None:
            result, seconds, cpu = outcome
            if report.add(path, result):
                report.compute_seconds += seconds
                report.compute_cpu_seconds += cpu
            if progress is not None:
                progress(report.done, len(paths))

        if jobs == 1 or len(paths) < 2:
            for path in paths:
                record(path, _get_or_reason(self, path))
        else:
            with ProcessPoolExecutor(max_workers=jobs, initializer=_one_thread) as pool:
                futures = {pool.submit(_get_or_reason, self, path): path for path in paths}
                for future in as_completed(futures):
                    record(futures[future], future.result())
        report.features = {str(p): report.features[str(p)] for p in paths if str(p) in report.features}
        report.seconds = time.perf_counter() - started
        return report


def _one_thread() -> None:
    """A worker runs one track at a time on one core: more torch threads only wait on a shared machine."""
    import torch

    torch.set_num_threads(1)


def _get_or_reason(store: PretrainedStore, path: Path):
    """Worker body: ``((features, cached) or the reason they could not be made, seconds, CPU seconds)``."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        result = store.get(path)
    except MusiclustError as exc:
        result = str(exc)
    except OSError as exc:
        result = f"{path.name} could not be read: {exc.strerror or exc}"
    return result, time.perf_counter() - started, time.process_time() - cpu


def segment_vectors(table, counts: Sequence[int], root: Path = PRETRAINED_CACHE, model: str = "MTT_musicnn",
                    jobs: int = 2, progress: Optional[ProgressFn] = None) -> list[np.ndarray]:
    """Per track of ``table`` (a :class:`~musiclust.store.table.TrackTable`) its ``(S_i, 250)`` MusiCNN
    vectors (:attr:`PretrainedFeatures.vectors`), cached; ``counts[i]`` is track i's mel segment count,
    which its vectors must match. A track that cannot be extracted, or whose count differs (its file
    changed since the mel was made), is a :class:`DataError` naming it: a model must never read vectors
    of other audio than its mel."""
    from musiclust.errors import DataError

    store = PretrainedStore(root, table.config, model)
    paths = [t.path for t in table.tracks]
    report = store.get_many(paths, jobs=jobs, progress=progress)
    if report.failed:
        path, reason = next(iter(report.failed.items()))
        raise DataError(f"MusiCNN could not embed {len(report.failed)} track(s), e.g. {Path(path).name}: {reason}")
    vectors = [report.features[str(p)].vectors for p in paths]
    wrong = [t.id for t, v, n in zip(table.tracks, vectors, counts) if len(v) != n]
    if wrong:
        raise DataError(f"the MusiCNN vectors of {len(wrong)} track(s) (e.g. {wrong[0]}) do not line up with their mel "
                        "segments: the files changed since they were featurized; featurize them again")
    return vectors


def attach_pretrained(prep, **options) -> list[np.ndarray]:
    """Fill ``prep.pretrained`` (a :class:`~musiclust.pipeline.Prepared`) once with every track's vectors,
    aligned with ``prep.segments``; ``options`` go to :func:`segment_vectors`. Returns them."""
    if prep.pretrained is None:
        prep.pretrained = segment_vectors(prep.table, [len(s) for s in prep.segments], **options)
    return prep.pretrained
