"""BasicVAE: an MLP encoder and decoder on the flattened segment (the course project's stage 1).

It sees the segment as 16,384 unrelated numbers, with no notion of time or frequency neighbourhoods and
no shift invariance, which is why the conv models should beat it; it is kept as the simplest VAE baseline.
One hidden layer of 128 units keeps it fast on CPU: the two 16,384-wide layers hold almost all of its
~4.2 M parameters and cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from musiclust.errors import ParameterError
from musiclust.models.base import Batch, BaseVAE, VAEConfig


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

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(batch["mel"]).chunk(2, dim=1)  # (B, latent_dim) each
        return mu, logvar

    def decode(self, z: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        mel = self.decoder(z).view(-1, 1, self.config.n_mels, self.config.frames)  # (B, 1, 128, 128)
        return {"mel": mel}
