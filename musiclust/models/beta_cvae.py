"""BetaCVAE: a beta-VAE (beta = 4) whose decoder is conditioned on the group label.

Only the DECODER sees the label (as a one-hot vector concatenated with z); the ENCODER is the
unconditioned :class:`~musiclust.models.conv_vae.ConvEncoder`. Uploaded tracks have no label, and an
unconditioned encoder embeds any track, labelled or not.

Because the decoder is told the group, the latent does not need to carry it, and with beta = 4
pressing on every nat of KL the latent is encouraged to drop group information and keep what varies
within a group. That makes the model useful for morphing (decode one latent with another group's
label) but unfair to score by how well its latent recovers the groups: :attr:`conditioned_on_label`
is True so metrics flag its clustering score against the group label as ``conditioned_on_label``.
Decoding (and so :meth:`reconstruct`) needs ``batch["label"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from musiclust.errors import ParameterError
from musiclust.models.base import Batch, BaseVAE
from musiclust.models.conv_vae import ConvDecoder, ConvEncoder, ConvVAEConfig


@dataclass(kw_only=True)
class BetaCVAEConfig(ConvVAEConfig):
    n_labels: int  # number of groups: the one-hot width fed to the decoder
    beta: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.n_labels, int) or isinstance(self.n_labels, bool) or self.n_labels < 2:
            raise ParameterError(f"BetaCVAEConfig.n_labels must be an integer >= 2, got {self.n_labels!r}")


class BetaCVAE(BaseVAE):
    config_class = BetaCVAEConfig
    conditioned_on_label = True

    def __init__(self, config: BetaCVAEConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config, config.latent_dim)
        self.decoder = ConvDecoder(config, config.latent_dim + config.n_labels)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(batch["mel"])  # the label is never read: any track can be embedded

    def decode(self, z: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        label = batch.get("label")
        if label is None:
            raise ParameterError("BetaCVAE decodes with a group label: pass batch['label'] ((B,) int64)")
        if label.shape != z.shape[:1] or label.min() < 0 or label.max() >= self.config.n_labels:
            raise ParameterError(
                f"BetaCVAE needs one label per sample in [0, {self.config.n_labels}), got shape {tuple(label.shape)} "
                f"with values in [{int(label.min())}, {int(label.max())}]"
            )
        onehot = F.one_hot(label.long(), self.config.n_labels).to(z.dtype)  # (B, n_labels)
        return {"mel": self.decoder(torch.cat([z, onehot], dim=1))}  # (B, 1, 128, 128)
