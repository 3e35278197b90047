"""A fixed linear code of *what* and *when* beside a time-pooled encoder, so it reconstructs as PCA does.

Why: the conv encoders pool over time, which is what makes them cluster by style, but a latent that
cannot say *when* a note falls cannot reconstruct a held-out segment as well as PCA of the same size
(issue 13; ``scripts/experiments/reconstruction_floor.py``: the best 32-number time-blind code loses to
PCA-32 on every set). :class:`SplitCode` gives part of the latent to *when* and starts the rest from a
linear code of *what*, both fitted on the training tracks before training:

* the **band code** (``style_dim`` numbers, the style part, what is clustered): the whitened PCA of each
  segment's mean level per mel band, i.e. its average spectrum. The model's encoder *adds* to it.
* the **time code** (``time_dim`` numbers, never clustered): the whitened PCA of the segment minus its
  band means, i.e. how it moves in time. Fixed; only its posterior variance is learned.

The decoder adds its conv output to the two codes' linear reconstruction. The models zero their
encoder's mean rows and their decoder's last layer at the start (:func:`start_as_code`), so the
untrained network reconstructs exactly as the two codes do and training learns what they miss.

Measured (``scripts/experiments/time_code.py``, latent 32 = 16 + 16, held-out tracks, 3 seeds): on the
real set's selection half 64.9 dB² against PCA-32's 65.3 and NMI 0.244 against the pooled model's
0.197; on ``natural`` 55.0 against 56.7, NMI 0.749 against 0.793 (``time_code_zero.json``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from musiclust.determinism import reproducible

VARIANCE_FLOOR = 1.0  # of a whitened component: the variance any direction has in per-band standardised segments
LOGVAR_START = -4.0  # the time code's posterior to start with: sharp, as a linear code is
MAX_FIT_SEGMENTS = 4096  # segments the codes are fitted on (a seeded sample): 4096 x 16,384 floats = 256 MB


def band_means(segments: np.ndarray) -> np.ndarray:
    """``(S, n_mels, frames)`` -> ``(S, n_mels)``: each segment's mean level per mel band."""
    return segments.mean(axis=2)


def deviations(segments: np.ndarray) -> np.ndarray:
    """``(S, n_mels, frames)`` -> ``(S, n_mels * frames)``: each segment minus its band means."""
    return (segments - segments.mean(axis=2, keepdims=True)).reshape(len(segments), -1)


class SplitCode(nn.Module):
    """The band code (``style_dim``) and the time code (``time_dim``) of ``(B, 1, n_mels, frames)`` segments.

    The latent is laid out ``[style | time]``. Every array is a buffer (saved with the weights, never
    trained) except the time code's log-variance. All zero until :meth:`fit`: the codes are then 0.
    """

    def __init__(self, style_dim: int, time_dim: int, n_mels: int, frames: int):
        super().__init__()
        self.style_dim, self.time_dim, self.shape = style_dim, time_dim, (1, n_mels, frames)
        self.register_buffer("band_mean", torch.zeros(n_mels))  # (n_mels,)
        self.register_buffer("band_basis", torch.zeros(style_dim, n_mels))  # (style_dim, n_mels), orthonormal rows
        self.register_buffer("band_scale", torch.ones(style_dim))  # (style_dim,) std of each component
        self.register_buffer("time_mean", torch.zeros(n_mels * frames))  # (n_mels * frames,)
        self.register_buffer("time_basis", torch.zeros(time_dim, n_mels * frames))  # (time_dim, n_mels * frames)
        self.register_buffer("time_scale", torch.ones(time_dim))  # (time_dim,)
        self.time_logvar = nn.Parameter(torch.full((time_dim,), LOGVAR_START))

    @reproducible()  # randomized PCA's BLAS pinned, as SegmentPCA's
    def fit(self, segments: Sequence[np.ndarray], seed: int) -> "SplitCode":
        """Fit both codes on the training tracks' ``(S_i, n_mels, frames)`` standardised segments."""
        from sklearn.decomposition import PCA

        segs = np.concatenate(list(segments))  # (S, n_mels, frames)
        if len(segs) > MAX_FIT_SEGMENTS:
            segs = segs[np.sort(np.random.default_rng(seed).choice(len(segs), MAX_FIT_SEGMENTS, replace=False))]
        for prefix, view in (("band", band_means(segs)), ("time", deviations(segs))):
            mean, basis, scale = (getattr(self, f"{prefix}_{n}") for n in ("mean", "basis", "scale"))
            n = min(len(scale), *view.shape)
            pca = PCA(n_components=n, svd_solver="randomized", random_state=seed).fit(view)
            with torch.no_grad():
                mean.copy_(torch.as_tensor(pca.mean_, dtype=torch.float32))
                basis.zero_()
                basis[:n].copy_(torch.as_tensor(pca.components_, dtype=torch.float32))
                scale.fill_(1.0)
                # Floored, as BasicVAE's code: on a handful of tracks the last components fit noise with a
                # variance near 0, and whitening a new track by it blows its code up.
                scale[:n].copy_(torch.as_tensor(np.sqrt(np.maximum(pca.explained_variance_, VARIANCE_FLOOR)), dtype=torch.float32))
        return self

    def band(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n_mels, frames)`` -> ``(B, style_dim)``: the band code."""
        bands = mel.mean(dim=3).flatten(1)  # (B, n_mels)
        return (bands - self.band_mean) @ self.band_basis.T / self.band_scale

    def time(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n_mels, frames)`` -> ``(B, time_dim)``: the time code."""
        moves = (mel - mel.mean(dim=3, keepdim=True)).flatten(1)  # (B, n_mels * frames)
        return (moves - self.time_mean) @ self.time_basis.T / self.time_scale

    def posterior(self, mel: torch.Tensor, mu_style: torch.Tensor, logvar_style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole latent's ``(mu, logvar)``, each ``(B, style_dim + time_dim)``: the encoder's style
        output added to the band code, then the time code."""
        return self.with_time(mel, mu_style + self.band(mel), logvar_style)

    def with_time(self, mel: torch.Tensor, mu_style: torch.Tensor, logvar_style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A style posterior ``(B, style_dim)`` each, followed by the time code of ``mel``."""
        mu_time = self.time(mel)  # (B, time_dim)
        return torch.cat([mu_style, mu_time], dim=1), torch.cat([logvar_style, self.time_logvar.expand_as(mu_time)], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, style_dim + time_dim)`` -> ``(B, 1, n_mels, frames)``: the two codes' linear reconstruction."""
        bands = (z[:, : self.style_dim] * self.band_scale) @ self.band_basis + self.band_mean  # (B, n_mels)
        moves = (z[:, self.style_dim:] * self.time_scale) @ self.time_basis + self.time_mean  # (B, n_mels * frames)
        return moves.view(-1, *self.shape) + bands[:, None, :, None]

    def style(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, style_dim + time_dim)`` -> ``(B, style_dim)``: the part that describes the music, not when."""
        return z[:, : self.style_dim]


@torch.no_grad()
def start_as_code(head: nn.Linear, style_dim: int, out: nn.Module) -> None:
    """Zero the encoder ``head``'s ``style_dim`` mean rows and the decoder's last layer ``out``: the
    network then starts as its codes. The log-variance rows keep their initial values (as measured)."""
    head.weight[:style_dim].zero_()
    head.bias[:style_dim].zero_()
    out.weight.zero_()
    if out.bias is not None:
        out.bias.zero_()
