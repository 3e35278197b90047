"""The fit loop shared by every model: seeded, cancellable, early-stopped and guarded against divergence.

Each epoch draws a few random segments of every track (so each track weighs the same however long it
is), runs Adam over them, then scores a fixed draw of validation segments with the full KL weight. The
weights with the best validation loss are kept. Whatever goes wrong (divergence, cancel, a bad
callback) the model is put back to the weights it had before :func:`fit`, so the caller's previous
model stays usable.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import sparse
import torch

from musiclust.determinism import reproducible
from musiclust.errors import DataError, ParameterError, TrainingCancelled, TrainingError
from musiclust.models import BaseVAE, model_name
from musiclust.settings import TrainConfig

ProgressFn = Callable[[int, int, dict, float], None]


@dataclass
class SegmentData:
    """Model input for a set of tracks.

    ``mel_segments[i]`` is track i's ``(n_segments_i, n_mels, frames)`` float32 log-mel segments, already
    standardised per mel band. ``lyrics`` is ``(N, V)`` float32 TF-IDF (dense, or SciPy sparse: rows are
    densified per batch) or None; ``has_lyrics`` ``(N,)`` bool says which rows are real (None: the rows
    that are not all zero; without lyrics it may be given but must be all False). ``labels`` is ``(N,)`` int64 group ids, needed only by label-conditioned models.
    ``pretrained[i]`` is track i's ``(n_segments_i, D)`` float32 pretrained-network vectors, one per mel
    segment and covering the same audio (:mod:`musiclust.pretrained.store`), or None.
    """

    mel_segments: Sequence[np.ndarray]
    lyrics: Optional[np.ndarray] = None
    has_lyrics: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    pretrained: Optional[Sequence[np.ndarray]] = None

    def __post_init__(self) -> None:
        n = len(self.mel_segments)
        if n == 0:
            raise DataError("no tracks to train on")
        shapes = {np.shape(s)[1:] for s in self.mel_segments}
        if len(shapes) != 1 or any(np.ndim(s) != 3 or len(s) == 0 for s in self.mel_segments):
            raise DataError(f"every track needs >= 1 segment of one shape (n, n_mels, frames); got shapes {sorted(shapes)}")
        if self.lyrics is not None:
            if sparse.issparse(self.lyrics):  # kept sparse: rows are densified per batch
                self.lyrics = sparse.csr_matrix(self.lyrics, dtype=np.float32)
            else:
                self.lyrics = np.asarray(self.lyrics, dtype=np.float32)
            if self.lyrics.ndim != 2 or self.lyrics.shape[0] != n:
                raise DataError(f"lyrics must be (N={n}, V), got shape {self.lyrics.shape}")
            if self.has_lyrics is None:
                self.has_lyrics = np.asarray((abs(self.lyrics) > 0).sum(axis=1)).ravel() > 0
        if self.has_lyrics is not None:
            self.has_lyrics = np.asarray(self.has_lyrics, dtype=bool)
            if self.has_lyrics.shape != (n,):
                raise DataError(f"has_lyrics must be (N={n},), got shape {self.has_lyrics.shape}")
            if self.lyrics is None and self.has_lyrics.any():
                raise DataError("has_lyrics marks tracks with lyrics, but no lyrics were given")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (n,):
                raise DataError(f"labels must be (N={n},), got shape {self.labels.shape}")
        if self.pretrained is not None:
            self.pretrained = [np.asarray(p, dtype=np.float32) for p in self.pretrained]
            dims = {p.shape[1:] for p in self.pretrained}
            if len(self.pretrained) != n or len(dims) != 1 or any(
                p.ndim != 2 or len(p) != len(s) for p, s in zip(self.pretrained, self.mel_segments)
            ):
                raise DataError(f"pretrained must hold one (n_segments_i, D) array per track, aligned with its {n} tracks' mel segments")

    @property
    def segment_shape(self) -> tuple[int, int]:
        return tuple(np.shape(self.mel_segments[0])[1:])

    def batch(self, tracks: np.ndarray, segs: np.ndarray) -> dict[str, torch.Tensor]:
        """The model batch of segment ``segs[j]`` of track ``tracks[j]`` for every j."""
        mel = np.stack([self.mel_segments[t][s] for t, s in zip(tracks, segs)]).astype(np.float32, copy=False)
        batch = {"mel": torch.from_numpy(mel).unsqueeze(1)}  # (B, 1, n_mels, frames)
        if self.lyrics is not None:
            rows = self.lyrics[tracks]
            batch["lyrics"] = torch.from_numpy(rows.toarray() if sparse.issparse(rows) else rows)  # (B, V)
            batch["has_lyrics"] = torch.from_numpy(self.has_lyrics[tracks])  # (B,)
        if self.labels is not None:
            batch["label"] = torch.from_numpy(self.labels[tracks])  # (B,)
        if self.pretrained is not None:
            batch["pretrained"] = torch.from_numpy(np.stack([self.pretrained[t][s] for t, s in zip(tracks, segs)]))  # (B, D)
            batch["pretrained_track"] = torch.from_numpy(np.stack([self.pretrained[t].mean(axis=0) for t in tracks]))  # (B, D)
        return batch

    def all_segments(self) -> tuple[np.ndarray, np.ndarray]:
        """(track, segment) indices of every segment, in order."""
        tracks = np.concatenate([np.full(len(s), i) for i, s in enumerate(self.mel_segments)])
        segs = np.concatenate([np.arange(len(s)) for s in self.mel_segments])
        return tracks, segs

    def sample_segments(self, per_track: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``per_track`` random segments of every track, shuffled: distinct ones while the track has enough."""
        tracks = np.repeat(np.arange(len(self.mel_segments)), per_track)
        segs = np.concatenate(
            [
                rng.choice(len(s), per_track, replace=False) if len(s) >= per_track else rng.integers(0, len(s), per_track)
                for s in self.mel_segments
            ]
        )
        order = rng.permutation(len(tracks))
        return tracks[order], segs[order]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, kl_weight, train_*, val_* terms, seconds
    best_epoch: int = 0  # 1-based epoch whose weights the model holds
    seconds: float = 0.0
    stopped_early: bool = False


def fit(
    model: BaseVAE,
    train_data: SegmentData,
    val_data: Optional[SegmentData] = None,
    config: Optional[TrainConfig] = None,
    progress: Optional[ProgressFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> FitResult:
    """Train ``model`` in place and return what happened.

    Without ``val_data`` there is no early stopping and the last epoch's weights are kept. The same
    model initial weights, data and ``config`` give bit-identical weights in any process on the same kind
    of CPU, whatever its core count or ``OMP_NUM_THREADS`` (:mod:`musiclust.determinism`; with
    ``num_threads = 0`` the count, and so the bits, follow the machine). Raises
    :class:`TrainingCancelled` when ``should_stop()`` turns true (checked every batch) and
    :class:`TrainingError` on a NaN/Inf or exploding loss or gradient; in both cases, and on any other
    error, the model is restored to its weights from before the call.
    """
    config = TrainConfig() if config is None else config
    name = model_name(model)
    _check_compatible(model, name, train_data, "training")
    if val_data is not None:
        _check_compatible(model, name, val_data, "validation")
    if len(train_data.mel_segments) * config.segments_per_track_per_epoch < 2:
        raise ParameterError("need at least 2 training segments per epoch (batch norm needs 2 samples)")
    initial = copy.deepcopy(model.state_dict())
    threads = config.num_threads or len(os.sched_getaffinity(0))
    try:
        with reproducible(config.seed, threads):
            return _fit(model, name, train_data, val_data, config, progress, should_stop)
    except BaseException:
        model.load_state_dict(initial)
        raise


def _fit(model, name, train_data, val_data, config, progress, should_stop) -> FitResult:
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n_train = len(train_data.mel_segments) * config.segments_per_track_per_epoch
    n_batches = math.ceil(n_train / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * n_batches, eta_min=config.lr / 20)
    # A fixed draw of validation segments (as many per track as in training): a stable yardstick that
    # costs a fraction of scoring every segment each epoch.
    val_segments = None
    if val_data is not None:
        val_segments = val_data.sample_segments(config.segments_per_track_per_epoch, np.random.default_rng([config.seed, 1]))
    warmup_steps = config.beta_warmup_epochs * n_batches
    result = FitResult()
    best_loss, best_state, bad_epochs, step = math.inf, None, 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        tracks, segs = train_data.sample_segments(config.segments_per_track_per_epoch, rng)
        sums: dict[str, float] = {}
        for index in np.array_split(np.arange(n_train), n_batches):  # near-equal sizes: no 1-sample batch
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"training {name} was cancelled in epoch {epoch}; the previous model is kept")
            kl_weight = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
            batch = train_data.batch(tracks[index], segs[index])
            losses = model.loss_function(batch, model(batch), kl_weight=kl_weight)
            values = {key: value.item() for key, value in losses.items()}
            _check_losses(values, name, epoch, "training", config.max_loss)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            if not torch.isfinite(grad_norm):
                raise TrainingError(
                    f"{name} diverged in epoch {epoch}: the gradient norm is {grad_norm.item()}; "
                    "the previous model is kept (try a lower learning rate)"
                )
            optimizer.step()
            schedule.step()
            step += 1
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value * len(index)
        row = {"epoch": epoch, "kl_weight": kl_weight}
        row.update({f"train_{k}": v / n_train for k, v in sums.items()})
        if val_data is not None:
            val = evaluate(model, val_data, config.batch_size, val_segments)
            _check_losses(val, name, epoch, "validation", config.max_loss)
            row.update({f"val_{k}": v for k, v in val.items()})
        row["seconds"] = time.perf_counter() - start
        result.history.append(row)
        if progress is not None:
            progress(epoch, config.epochs, dict(row), row["seconds"])
        if val_data is None:
            result.best_epoch = epoch
            continue
        if row["val_loss"] < best_loss:
            best_loss, best_state, bad_epochs = row["val_loss"], copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                result.stopped_early = epoch < config.epochs
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate(
    model: BaseVAE, data: SegmentData, batch_size: int = 64, segments: Optional[tuple[np.ndarray, np.ndarray]] = None
) -> dict[str, float]:
    """Mean loss terms in eval mode (z = mu) with the full KL weight.

    Over the ``(tracks, segment indices)`` pairs in ``segments``, or every segment of ``data`` when None.
    """
    model.eval()
    tracks, segs = data.all_segments() if segments is None else segments
    sums: dict[str, float] = {}
    for index in np.array_split(np.arange(len(tracks)), math.ceil(len(tracks) / batch_size)):
        batch = data.batch(tracks[index], segs[index])
        for key, value in model.loss_function(batch, model(batch), kl_weight=1.0).items():
            sums[key] = sums.get(key, 0.0) + value.item() * len(index)
    return {key: value / len(tracks) for key, value in sums.items()}


def _check_losses(losses: dict, name: str, epoch: int, phase: str, max_loss: float) -> None:
    """Raise :class:`TrainingError` naming the first NaN/Inf term, or an exploding total.

    ``losses`` maps term names to floats.
    """
    for key in sorted(losses, key=lambda k: k == "loss"):  # name the culprit term before the total
        if not math.isfinite(losses[key]):
            raise TrainingError(
                f"{name} diverged in epoch {epoch}: the {phase} loss term {key!r} is {losses[key]}; the previous "
                "model is kept (check the features for NaN/Inf, or lower the learning rate)"
            )
    if losses["loss"] > max_loss:
        raise TrainingError(
            f"{name} diverged in epoch {epoch}: the {phase} loss exploded to {losses['loss']:.3g} "
            f"(> {max_loss:.3g}); the previous model is kept (try a lower learning rate)"
        )


def _check_compatible(model: BaseVAE, name: str, data: SegmentData, role: str) -> None:
    config = model.config
    if data.segment_shape != (config.n_mels, config.frames):
        raise ParameterError(
            f"{name} takes ({config.n_mels}, {config.frames}) segments; the {role} data has {data.segment_shape}"
        )
    lyrics_dim = getattr(config, "lyrics_dim", None)
    if lyrics_dim is not None and data.lyrics is not None and data.lyrics.shape[1] != lyrics_dim:
        raise ParameterError(f"{name} takes {lyrics_dim}-word lyrics; the {role} data has {data.lyrics.shape[1]}")
    pretrained_dim = getattr(config, "pretrained_dim", None)
    if pretrained_dim is not None:
        if data.pretrained is None:
            raise ParameterError(f"{name} reads pretrained-network vectors: the {role} data has none")
        if data.pretrained[0].shape[1] != pretrained_dim:
            raise ParameterError(f"{name} takes {pretrained_dim}-D pretrained vectors; the {role} data has {data.pretrained[0].shape[1]}")
    if model.conditioned_on_label:
        n_labels = config.n_labels
        if data.labels is None:
            raise ParameterError(f"{name} is conditioned on the group label: the {role} data needs labels")
        if data.labels.min() < 0 or data.labels.max() >= n_labels:
            raise ParameterError(f"{name} takes labels in [0, {n_labels}); the {role} data has other values")
