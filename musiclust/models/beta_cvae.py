"""BetaCVAE: a beta-VAE (beta = 4) whose decoder is conditioned on the group label.

Only the DECODER sees the label (as a one-hot vector concatenated with z); the ENCODER is the
unconditioned :class:`~musiclust.models.conv_vae.ConvEncoder`. Uploaded tracks have no label, and an
unconditioned encoder embeds any track, labelled or not.

Because the decoder is told the group, the latent does not need to carry it, and with beta = 4
pressing on every nat of KL the latent is encouraged to drop group information and keep what varies
within a group. That makes the model useful for morphing (decode one latent with another group's
label) but unfair to score by how well its latent recovers the groups: :attr:`conditioned_on_label`
is True so metrics flag its clustering score against the group label as ``conditioned_on_label``.
Decoding (and so :meth:`reconstruct`) needs ``batch["label"]``. Its latent is split as ConvVAE's is
(a pooled style part plus a fixed time code, :mod:`musiclust.models.linear_code`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from musiclust.errors import ParameterError
from musiclust.models.base import Batch
from musiclust.models.conv_vae import ConvVAE, ConvVAEConfig


@dataclass(kw_only=True)
class BetaCVAEConfig(ConvVAEConfig):
    n_labels: int  # number of groups: the one-hot width fed to the decoder
    beta: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.n_labels, int) or isinstance(self.n_labels, bool) or self.n_labels < 2:
            raise ParameterError(f"BetaCVAEConfig.n_labels must be an integer >= 2, got {self.n_labels!r}")


class BetaCVAE(ConvVAE):
    """ConvVAE's encoder and latent; the decoder also reads the group label."""

    config_class = BetaCVAEConfig
    conditioned_on_label = True

    # encode and embedding are ConvVAE's: the label is never read there, so any track can be embedded

    @staticmethod
    def decoder_inputs(config: BetaCVAEConfig) -> int:
        return config.latent_dim + config.n_labels  # z, then the label's one-hot

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
        mel = self.decoder(torch.cat([z, onehot], dim=1))  # (B, 1, 128, 128)
        return {"mel": mel if self.code is None else mel + self.code.decode(z)}
