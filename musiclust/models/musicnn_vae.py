"""MusiCNNVAE: a VAE over a frozen pretrained front end, MusiCNN's per-segment view, beside the mel.

Why: on real recordings the mel VAEs learn mostly loudness and timbre of the mix, while MusiCNN, trained
to tag ~25k MagnaTagATune clips, already separates styles (issue 13). Its 200-unit penultimate layer and
50 tag probabilities for the ~3 s patch under each mel segment (aligned by
:mod:`musiclust.pretrained.store`) are the input here; the network itself is never trained.

The model (every choice measured on the real set's selection half, see the results files):

* a **pretrained expert**: the segment's 250-D vector, standardised by a non-affine batch norm whose
  running statistics are the training set's mean and variance, through an MLP to ``(mu, logvar)``;
* optionally a **mel expert** (the conv encoder of :class:`~musiclust.models.conv_vae.ConvVAE`), joined
  with the first by a product of experts (:func:`~musiclust.models.mvae_poe.product_of_experts`) and
  trained with the subsampled ELBO as :class:`~musiclust.models.mvae_poe.MVAEPoE` is;
* a **contrastive term** (InfoNCE, as in COLA, Saeed et al. 2021): each segment's posterior mean must
  pick out the encoding of its own track's mean vector among the other tracks of the batch. The track
  is the one unit the data gives without a label, and what stays the same across a track's segments
  is closer to its style than what changes from one segment to the next;
* two decoders: an MLP back to the standardised 250-D vector, and the ConvVAE's mel decoder, so the
  reconstructions page and its MSE work as for every model. ``mel_weight`` scales the mel term's
  gradient *into the latent* (the decoder itself always learns at full weight): 1 is the plain ELBO,
  0 makes the mel decoder a read-out that does not pull the latent towards the mix's loudness.

A track's embedding is the mean of its segments' posterior means (as for every model). Without the
``"pretrained"`` key a model with a mel expert encodes from the mel alone; one without refuses.

Chosen on the real set's selection half (99 tracks, 8 soundtracks, k = 8, seeds 0-2; NMI / ARI of
k-means on the centred track embeddings; ``docs/results/musicnn_real_select*.json``), 15 epochs:
mel read-out (``mel_weight`` 0) 0.267 / 0.111; the plain ELBO (``mel_weight`` 1) 0.207 / 0.049; the
product of experts with the mel 0.204 / 0.057 (the mel pulls the latent towards the mix, as it does
for ConvVAE); latent 16 0.298 / 0.144; β 0.25 0.299 / 0.132; the track-mean target (``track_weight``
1) 0.307 / 0.154. With 45 epochs (early-stopped at 12-25) the read-out reached 0.315 / 0.166 (AMD
EPYC; the pretrained row there 0.321 / 0.154, MFCC 0.194 / 0.047).

The contrastive term, 45 epochs, on another machine (Intel Xeon; there the read-out alone gave
0.293 / 0.135 and the pretrained row 0.310 / 0.124, MFCC 0.230 / 0.077): weight 10 / 50 / 200 / 500 /
1000 at temperature 0.1 gave 0.306 / 0.152, 0.316 / 0.179, 0.337 / 0.204, 0.285 / 0.126,
0.299 / 0.137; weight 100 / 200 / 400 at 0.5 gave 0.319 / 0.159, **0.371 / 0.208**, 0.323 / 0.177;
weight 200 at 1.0 gave 0.358 / 0.207 (``musicnn_real_select_contrast*.json``). So the defaults are the
read-out, latent 32, no track target, the contrastive term at weight 200 and temperature 0.5, and the
real set is trained with 45 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from musiclust.errors import ParameterError
from musiclust.models.base import Batch, BaseVAE, gaussian_nll_sum, kl_sum
from musiclust.models.conv_vae import ConvDecoder, ConvEncoder, ConvVAEConfig
from musiclust.models.mvae_poe import product_of_experts

PRETRAINED_DIM = 250  # MusiCNN: 200 penultimate units + 50 tag probabilities


@dataclass(kw_only=True)
class MusiCNNVAEConfig(ConvVAEConfig):
    pretrained_dim: int = PRETRAINED_DIM
    hidden: int = 256  # width of the pretrained encoder's and decoder's hidden layers
    mel_expert: bool = False  # also encode the mel (product of experts)
    mel_weight: float = 0.0  # the mel reconstruction's gradient into the latent (0: read-out only)
    pretrained_weight: float = 1.0  # of the pretrained vector's reconstruction (250 terms vs the mel's 16,384)
    # of reconstructing the mean vector of the segment's whole track from its latent (a push towards
    # what all of a track's segments share; measured, not chosen: see the module docstring)
    track_weight: float = 0.0
    # of a contrastive term (InfoNCE, as COLA): a segment's latent must pick out its own track's mean
    # vector, encoded, among the other tracks of the batch; 0 = off. Label-free: the track is the unit.
    contrast_weight: float = 200.0
    contrast_temperature: float = 0.5
    # No time code (models/linear_code.py): the whole latent is the tagger's view, and the mel decoder a
    # read-out of it. Tried on 2026-12-05 (the tagger's half added to the band code, as ConvVAE's encoder
    # adds to it): with the mel's gradient stopped, training moves that half freely and so corrupts the
    # band code the decoder reads back. On the test clips the mel error rose with training (2,819 -> 2,914
    # nats per segment, 6 epochs) while every other term fell. Not adopted.
    time_dim: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive_ints("pretrained_dim", "hidden")
        if self.time_dim != 0:
            raise ParameterError(f"MusiCNNVAEConfig.time_dim must be 0 (this model has no time code), got {self.time_dim!r}")
        if not isinstance(self.mel_expert, bool):
            raise ParameterError(f"MusiCNNVAEConfig.mel_expert must be true or false, got {self.mel_expert!r}")
        if not 0 <= self.mel_weight <= 1:
            raise ParameterError(f"MusiCNNVAEConfig.mel_weight must be in [0, 1], got {self.mel_weight!r}")
        if not self.pretrained_weight > 0:
            raise ParameterError(f"MusiCNNVAEConfig.pretrained_weight must be > 0, got {self.pretrained_weight!r}")
        if not self.track_weight >= 0:
            raise ParameterError(f"MusiCNNVAEConfig.track_weight must be >= 0, got {self.track_weight!r}")
        if not self.contrast_weight >= 0 or not self.contrast_temperature > 0:
            raise ParameterError(f"MusiCNNVAEConfig: contrast_weight must be >= 0 and contrast_temperature > 0, got "
                                 f"{self.contrast_weight!r} and {self.contrast_temperature!r}")


class PretrainedEncoder(nn.Module):
    """``(B, D)`` raw pretrained vectors -> ``(mu, logvar)``; its batch norm also standardises the targets."""

    def __init__(self, dim: int, hidden: int, latent: int):
        super().__init__()
        # momentum=None: a cumulative average, so the running statistics converge to the training set's
        # mean and variance (the inputs never change) instead of following the last batches.
        self.norm = nn.BatchNorm1d(dim, affine=False, momentum=None)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * latent)
        )

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the units the decoder predicts: the running statistics, never the batch's."""
        return (x - self.norm.running_mean) / torch.sqrt(self.norm.running_var + self.norm.eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(self.norm(x)).chunk(2, dim=1)
        return mu, logvar


class MusiCNNVAE(BaseVAE):
    """Pretrained expert (x mel expert) x prior; pretrained and mel decoders (see the module docstring)."""

    config_class = MusiCNNVAEConfig

    def __init__(self, config: MusiCNNVAEConfig):
        super().__init__(config)
        latent, hidden = config.latent_dim, config.hidden
        self.pretrained_expert = PretrainedEncoder(config.pretrained_dim, hidden, latent)
        self.mel_expert = ConvEncoder(config, latent) if config.mel_expert else None
        self.pretrained_decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, config.pretrained_dim),
        )
        self.mel_decoder = ConvDecoder(config, latent)
        self.track_decoder = (
            nn.Sequential(nn.Linear(latent, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, config.pretrained_dim))
            if config.track_weight > 0 else None
        )

    # --- encoding --------------------------------------------------------------------------
    def _pretrained(self, batch: Batch):
        x = batch.get("pretrained")
        if x is None:
            return None
        n = batch["mel"].shape[0]
        if x.shape != (n, self.config.pretrained_dim):
            raise ParameterError(f"MusiCNNVAE expects pretrained of shape (B={n}, {self.config.pretrained_dim}), got {tuple(x.shape)}")
        return x

    def experts(self, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor, None]]:
        """The experts present for this batch, as ``(mu, logvar, None)`` for :func:`product_of_experts`."""
        x = self._pretrained(batch)
        found = []
        if x is not None:
            found.append((*self.pretrained_expert(x), None))
        if self.mel_expert is not None:
            found.append((*self.mel_expert(batch["mel"]), None))
        if not found:
            raise ParameterError(
                "this MusiCNNVAE reads only MusiCNN vectors: give batch['pretrained'] (B, "
                f"{self.config.pretrained_dim}) (musiclust.pretrained.store extracts them)"
            )
        return found

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior of every expert present, times the prior."""
        return product_of_experts(self.experts(batch))

    def decode(self, z: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"mel": self.mel_decoder(z), "pretrained": self.pretrained_decoder(z)}  # (B, 1, 128, 128), (B, D)

    def _mel_input(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` whose gradient from the mel decoder is scaled by ``mel_weight`` (the value is unchanged)."""
        w = self.config.mel_weight
        return z if w == 1 else w * z + (1 - w) * z.detach()

    # --- training ----------------------------------------------------------------------------
    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = self._pretrained(batch)
        if x is None:
            raise ParameterError("MusiCNNVAE trains on batch['pretrained'] (the pretrained vectors of every segment)")
        pre = (*self.pretrained_expert(x), None)  # updates the running statistics first (train mode)
        out = {"target": self.pretrained_expert.standardise(x).detach()}
        track = batch.get("pretrained_track")
        if self.config.track_weight > 0 or self.config.contrast_weight > 0:
            if track is None or track.shape != x.shape:
                raise ParameterError("MusiCNNVAE with track_weight or contrast_weight > 0 trains on batch['pretrained_track'] (B, D) too")
        if self.config.track_weight > 0:
            out["track_target"] = self.pretrained_expert.standardise(track).detach()
        if self.config.contrast_weight > 0:  # the track's mean, encoded with the running statistics (no update)
            out["mu_track"] = self.pretrained_expert.net(self.pretrained_expert.standardise(track)).chunk(2, dim=1)[0]
            out["same_track"] = (track[:, None, :] == track[None, :, :]).all(dim=2)  # (B, B)
        if self.mel_expert is None:
            posteriors = {"joint": product_of_experts([pre])}
        else:
            mel = (*self.mel_expert(batch["mel"]), None)
            posteriors = {"joint": product_of_experts([pre, mel]), "mel_only": product_of_experts([mel]),
                          "pretrained_only": product_of_experts([pre])}
        for key, (mu, logvar) in posteriors.items():
            z = self.reparameterize(mu, logvar)
            out[f"mu_{key}"], out[f"logvar_{key}"] = mu, logvar
            if key != "pretrained_only":
                out[f"mel_{key}"] = self.mel_decoder(self._mel_input(z))
            if key != "mel_only":
                out[f"pretrained_{key}"] = self.pretrained_decoder(z)
        out.update(mu=out["mu_joint"], logvar=out["logvar_joint"], mel=out["mel_joint"], pretrained=out["pretrained_joint"])
        if "track_target" in out:  # the whole track's mean, from this segment's joint latent (a second head)
            out["track"] = self.track_decoder(self.reparameterize(out["mu"], out["logvar"]))
        return out

    def loss_function(self, batch: Batch, outputs: dict[str, torch.Tensor], kl_weight: float = 1.0) -> dict:
        """Negative (subsampled) ELBO, summed over terms and samples, divided by the batch size.

        Terms: the joint posterior reconstructs mel and pretrained vector; with a mel expert, the mel-only
        posterior reconstructs the mel and the pretrained-only one the vector (as :class:`MVAEPoE`)."""
        mel, target = batch["mel"], outputs["target"]
        n = mel.shape[0]
        recon_mel = sum(gaussian_nll_sum(v, mel) for k, v in outputs.items() if k.startswith("mel_")) / n
        recon_pre = sum(gaussian_nll_sum(v, target) for k, v in outputs.items() if k.startswith("pretrained_")) / n
        kl = sum(kl_sum(outputs[f"mu_{k}"], outputs[f"logvar_{k}"]) for k in ("joint", "mel_only", "pretrained_only")
                 if f"mu_{k}" in outputs) / n
        loss = recon_mel + self.config.pretrained_weight * recon_pre + kl_weight * self.config.beta * kl
        terms = {"recon_audio": recon_mel, "recon_pretrained": recon_pre, "kl": kl}
        if "track" in outputs:
            terms["recon_track"] = gaussian_nll_sum(outputs["track"], outputs["track_target"]) / n
            loss = loss + self.config.track_weight * terms["recon_track"]
        if "mu_track" in outputs:
            terms["contrast"] = info_nce(outputs["mu"], outputs["mu_track"], outputs["same_track"], self.config.contrast_temperature)
            loss = loss + self.config.contrast_weight * terms["contrast"]
        return {"loss": loss, **terms}


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, same: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE of ``anchors[i]`` (B, d) picking ``positives[i]`` (B, d) among all positives, by cosine
    over ``temperature``; other rows of the same track (``same``, (B, B)) are no negatives."""
    a, p = F.normalize(anchors, dim=1), F.normalize(positives, dim=1)
    logits = a @ p.T / temperature  # (B, B)
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))
