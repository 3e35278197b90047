"""Feature parameters as a frozen dataclass with a JSON round-trip.

Every cached feature and every checkpoint records the :class:`FeatureConfig` it was made with,
so features computed with other parameters are never mixed up with them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from musiclust.errors import ParameterError

# What a model hears of a file longer than ``clip_seconds`` (FeatureConfig.excerpt). Both policies take
# clip_seconds of audio in all, so features cost the same; a file no longer than that is heard whole.
EXCERPTS = ("middle", "windows")
EXCERPT_DESCRIPTIONS = {
    "middle": "Of a track longer than {clip:g} s, the models hear its middle {clip:g} s.",
    "windows": "Of a track longer than {clip:g} s, the models hear {n} windows of {window:g} s spread evenly across it "
               "(at 1/{twice_n}, 3/{twice_n} … of its length), joined: {clip:g} s in all.",
}
FEATURES_VERSIONS = (1, 2)


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes model input.

    The defaults give 128 mel bands at 22,050 Hz with a 2048-point FFT and hop 512 (~23 ms frames),
    the usual MIR setting; a 30 s clip is ~1292 frames, cut into 128-frame (~3 s) segments for the models.
    """

    sample_rate: int = 22050
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    fmin: float = 0.0
    fmax: float = 11025.0
    clip_seconds: float = 30.0  # audio featurized per track (longer files are cut)
    min_seconds: float = 1.0  # shorter audio is refused
    max_file_seconds: float = 1200.0  # files longer than this are refused before decoding
    n_mfcc: int = 20
    segment_frames: int = 128  # model input width, ~3 s
    # What of a longer file is heard (see EXCERPTS): 5 windows of 6 s spread across it. Measured against the
    # middle 30 s (the earlier behaviour) and 3 windows of 10 s on 195 full-length recordings of 8 soundtracks
    # (docs/results/excerpt_policy_real.json): k-means NMI vs the middle +0.012 +/- 0.005 on MFCC statistics
    # (better for 8 of 10 seeds), +0.010 +/- 0.008 on PCA, leave-one-out 1-NN accuracy +1.6 / +2.6 points;
    # conv_vae -0.008 (3 seeds). A small gain, of the same sign for MFCC on a 94-track pilot set that shares
    # 4 of its 5 soundtracks (docs/results/excerpt_policy_dev5.json). 6 s is ~2 model segments, so few
    # segments straddle a join.
    excerpt: str = "windows"
    excerpt_windows: int = 5  # windows of clip_seconds / excerpt_windows each, with excerpt="windows"
    # How the features are computed, part of the fingerprint so features made one way are never served as
    # the other's: 1 = float64 FFT (dB within 1e-5 of librosa), log10, scipy's DCT and Savitzky-Golay;
    # 2 = float32 FFT (within ~2e-3 dB), log2, the same DCT and delta as matrix product and convolution:
    # ~1.4x faster (docs/benchmark.md). A config read without this field (written before it existed) is 1.
    features_version: int = 2

    def __post_init__(self) -> None:
        positive = ("sample_rate", "n_mels", "n_fft", "hop_length", "clip_seconds", "n_mfcc", "segment_frames")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ParameterError(f"FeatureConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.hop_length > self.n_fft:
            raise ParameterError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ParameterError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}, "
                f"sample_rate={self.sample_rate}"
            )
        if self.min_seconds * self.sample_rate < self.n_fft:
            raise ParameterError("min_seconds must cover at least one FFT window")
        if self.excerpt not in EXCERPTS:
            raise ParameterError(f"FeatureConfig.excerpt must be one of {', '.join(EXCERPTS)}, got {self.excerpt!r}")
        if not isinstance(self.excerpt_windows, int) or self.excerpt_windows < 1:
            raise ParameterError(f"FeatureConfig.excerpt_windows must be a positive whole number, got {self.excerpt_windows!r}")
        if self.excerpt == "windows" and self.clip_seconds / self.excerpt_windows * self.sample_rate < self.n_fft:
            raise ParameterError(
                f"{self.excerpt_windows} windows of {self.clip_seconds:g} s are shorter than one FFT window each"
            )
        if self.features_version not in FEATURES_VERSIONS:
            raise ParameterError(f"FeatureConfig.features_version must be one of {FEATURES_VERSIONS}, got {self.features_version!r}")
        if self.n_mfcc > self.n_mels:
            raise ParameterError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")

    def to_dict(self) -> dict:
        """The parameters as plain JSON types. With the middle excerpt the two excerpt fields are left out:
        that is how every record was written before they existed, so feature caches, shard stores and
        checkpoints made then keep their fingerprint and stay valid."""
        data = asdict(self)
        if self.excerpt == "middle":
            del data["excerpt"], data["excerpt_windows"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        """Inverse of :meth:`to_dict`; a record without ``excerpt`` was made with the middle excerpt,
        whatever today's default is."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ParameterError(f"unknown FeatureConfig fields: {sorted(unknown)}")
        # A record without a field was written before it existed: the middle excerpt, the version-1 features.
        return cls(**{"excerpt": "middle", "features_version": 1, **data})

    def fingerprint(self) -> str:
        """A short stable hash of the parameters: part of every feature-cache key."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def excerpt_description(self) -> str:
        """One sentence for a person (the upload page): what the models hear of a long track."""
        n = self.excerpt_windows
        return EXCERPT_DESCRIPTIONS[self.excerpt].format(
            clip=self.clip_seconds, n=n, window=round(self.clip_seconds / n, 1), twice_n=2 * n
        )

    @property
    def clip_frames(self) -> int:
        """Frames of log-mel for a full clip (librosa's centred framing)."""
        return 1 + int(self.clip_seconds * self.sample_rate) // self.hop_length
