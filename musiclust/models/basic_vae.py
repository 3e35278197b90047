"""BasicVAE: an MLP encoder and decoder on the flattened segment (the course project's stage 1).

It sees the segment as 16,384 unrelated numbers, with no notion of time or frequency neighbourhoods and
no shift invariance, which is why the conv models should beat it; it is kept as the simplest VAE baseline.
One hidden layer of 128 units keeps it fast on CPU: the two 16,384-wide layers hold almost all of its
~4.2 M parameters and cost.

Beside the MLP runs a fixed linear code: the PCA of the training tracks' segments, whitened
(:meth:`BasicVAE.fit_linear_code`, called by the pipeline before training). The posterior mean is that
code plus what the encoder's MLP adds, and the decoder adds its MLP's output to the code's linear
reconstruction, so the untrained network *is* PCA and training learns only what PCA misses. Trained from
scratch the MLP reconstructed the held-out tracks worse than PCA of its latent size (issue 13; the
``natural`` table: 87 dB² against PCA's 57, 3 seeds, 15 epochs); with the linear code, seed 0 reached
55.9 dB² against PCA's 57.3 (53.1 with 45 epochs). On the real set's selection half (99 full-length tracks) it ties PCA (73.2
against 73.0): with that little music the MLP learns nothing that carries over to held-out tracks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from musiclust.errors import ParameterError
from musiclust.models.base import Batch, BaseVAE, VAEConfig

VARIANCE_FLOOR = 1.0  # of a component of the linear code (see fit_linear_code)
LOGVAR_START = -4.0  # the posterior's starting log-variance with the linear code: a sharp posterior, as PCA's code is


@dataclass(kw_only=True)
class BasicVAEConfig(VAEConfig):
    hidden: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.hidden, int) or self.hidden <= 0:
            raise ParameterError(f"BasicVAEConfig.hidden must be a positive integer, got {self.hidden!r}")


class BasicVAE(BaseVAE):
    config_class = BasicVAEConfig

    def __init__(self, config: BasicVAEConfig):
        super().__init__(config)
        size = config.n_mels * config.frames
        self.encoder = nn.Sequential(
            nn.Flatten(),  # (B, 16384)
            nn.Linear(size, config.hidden),  # (B, 128)
            # Adam moves all 16,384 input weights at once: keep the sum in range. LayerNorm, not BatchNorm:
            # it has no running statistics, so a model validated after a handful of batches is not thrown
            # off by immature ones (that made small collections diverge at validation).
            nn.LayerNorm(config.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(config.hidden, 2 * config.latent_dim),  # (B, 2 * latent_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden),  # (B, 128)
            nn.LeakyReLU(0.2),
            nn.Linear(config.hidden, size),  # (B, 16384), linear: targets ~N(0, 1)
        )
        # The fixed linear code (buffers: saved with the weights, never trained). All zero until
        # fit_linear_code: the code is then 0 and the network is the MLP alone.
        self.register_buffer("code_mean", torch.zeros(size))  # (16384,)
        self.register_buffer("code_basis", torch.zeros(config.latent_dim, size))  # (latent_dim, 16384), orthonormal rows
        self.register_buffer("code_scale", torch.ones(config.latent_dim))  # (latent_dim,) std of each component
        self.register_load_state_dict_pre_hook(_without_linear_code)

    @torch.no_grad()
    def fit_linear_code(self, mean: np.ndarray, components: np.ndarray, variance: np.ndarray) -> None:
        """Set the linear code to a PCA of the training segments (``mean`` (D,), ``components`` (L', D),
        ``variance`` (L',), L' <= latent_dim; missing components stay 0) and zero the MLPs' outputs, so
        the posterior mean starts as the whitened PCA code and the reconstruction as PCA's."""
        n = min(len(components), self.config.latent_dim)
        self.code_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.code_basis.zero_()
        self.code_basis[:n].copy_(torch.as_tensor(components[:n], dtype=torch.float32))
        self.code_scale.fill_(1.0)
        # Floored at 1, the variance any direction carries in these per-band standardised segments: on a
        # handful of tracks PCA's last components fit noise with a variance near 0, and whitening a new
        # track's projection by it blew the code (and the KL term) up (8 clips: validation loss 2e8).
        self.code_scale[:n].copy_(torch.as_tensor(np.sqrt(np.maximum(variance[:n], VARIANCE_FLOOR)), dtype=torch.float32))
        head, out = self.encoder[-1], self.decoder[-1]
        head.weight[: self.config.latent_dim].zero_()
        head.bias[: self.config.latent_dim].zero_()
        head.bias[self.config.latent_dim:].fill_(LOGVAR_START)
        out.weight.zero_()
        out.bias.zero_()

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(batch["mel"]).chunk(2, dim=1)  # (B, latent_dim) each
        code = (batch["mel"].flatten(1) - self.code_mean) @ self.code_basis.T / self.code_scale  # (B, latent_dim)
        return code + mu, logvar

    def decode(self, z: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        linear = (z * self.code_scale) @ self.code_basis + self.code_mean  # (B, 16384)
        mel = (self.decoder(z) + linear).view(-1, 1, self.config.n_mels, self.config.frames)  # (B, 1, 128, 128)
        return {"mel": mel}


def _without_linear_code(module: BasicVAE, state: dict, prefix: str, *args) -> None:
    """A checkpoint saved before the linear code existed loads as what it was: the MLP alone (code 0)."""
    state.setdefault(prefix + "code_mean", torch.zeros_like(module.code_mean))
    state.setdefault(prefix + "code_basis", torch.zeros_like(module.code_basis))
    state.setdefault(prefix + "code_scale", torch.ones_like(module.code_scale))
