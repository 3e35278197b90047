"""The choices of a training run, as plain dataclasses: :class:`Settings` (what :mod:`musiclust.pipeline`
trains with) and :class:`TrainConfig` (the fit loop's, :mod:`musiclust.models.training`).

Here, apart from the code that uses them, because the app's retrain form shows their defaults on every page
and importing the pipeline or the fit loop imports torch and scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

from musiclust.errors import ParameterError
from musiclust.models.hybrid import check_missing_lyrics


@dataclass
class Settings:
    """Choices of a training run that are not network architecture (those live in each model's config)."""

    latent_dim: int = 32
    beta: float = 4.0  # β of the conditioned β-VAE (the other models use β = 1)
    k: Optional[int] = None  # clusters; None = number of groups, or found from the data (prepare)
    seed: int = 0
    epochs: Optional[int] = None  # None = the fit loop's tuned default (TrainConfig.epochs)
    batch_size: int = 64
    cluster_method: str = "kmeans"
    val_fraction: float = 0.15
    fusion_rank: int = 16  # lyrics dimensions in hybrid fusion
    fusion_weight: float = 1.0  # of the lyrics block against the audio block (both unit total variance)
    fusion_missing_lyrics: str = "apart"  # a track without lyrics: "apart" (no words) or "centre" (unknown)
    tfidf_max_features: int = 1000

    def __post_init__(self) -> None:
        if self.latent_dim < 2 or (self.epochs is not None and self.epochs < 1) or self.batch_size < 2:
            raise ParameterError("latent_dim >= 2, epochs >= 1 and batch_size >= 2 are required")
        if self.k is not None and self.k < 2:
            raise ParameterError(f"k must be at least 2, got {self.k}")
        if self.beta < 0:
            raise ParameterError(f"beta must be >= 0, got {self.beta}")
        check_missing_lyrics(self.fusion_missing_lyrics, "fusion_missing_lyrics")


@dataclass
class TrainConfig:
    """How to train; with the defaults one model trains in ~10-20 s on one CPU core for ~450 tracks.

    The learning rate follows a cosine from ``lr`` down to ``lr / 20`` over all ``epochs``: with few
    epochs it settles the weights (and so the clustering) instead of stopping mid-stride.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    patience: int = 4  # epochs without a better validation loss before stopping
    beta_warmup_epochs: int = 3  # KL weight ramps linearly per step from ~0 to 1 over these epochs
    max_grad_norm: float = 1e4  # clip spikes only: typical gradient norms of these per-sample-sum losses are 1e2-1e3
    segments_per_track_per_epoch: int = 3
    max_loss: float = 1e6  # a batch loss above this is divergence (a fresh model starts near 1e4)
    # torch intra-op threads (0 = all cores). One by default: two are only ~1.6x faster on an idle
    # 2-core machine but up to 15x SLOWER when anything else runs (OpenMP threads spin-wait for a busy
    # core), and the thread count is part of what makes a run bit-reproducible. To use both cores,
    # train two models in two processes.
    num_threads: int = 1

    def __post_init__(self) -> None:
        positive_ints = ("epochs", "batch_size", "patience", "segments_per_track_per_epoch")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ParameterError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("beta_warmup_epochs", "num_threads", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ParameterError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        for name in ("lr", "max_grad_norm", "max_loss"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ParameterError(f"TrainConfig.{name} must be a positive finite number, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ParameterError(f"unknown TrainConfig fields: {unknown}")
        return cls(**data)
