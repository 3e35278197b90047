"""Product-of-experts multimodal VAE (Wu & Goodman 2018, "Multimodal Generative Models for Scalable
Weakly-Supervised Learning"): each modality's encoder is an expert giving a Gaussian over z, and the
posterior is the precision-weighted product of the experts present and a standard-normal prior
expert. A track without lyrics is encoded by audio and prior alone, by design, never by a zero
lyrics vector.

By default the whole latent is the experts' product (``time_dim`` 0). With ``time_dim`` > 0 it splits
as ConvVAE's does (:mod:`musiclust.models.linear_code`): the experts meet on the style part, on what
they add to the audio's band code, and the time part is the audio's time code alone (lyrics cannot say
when a note falls). Measured on 2026-12-05 and not adopted (docs/results/*_split_poe.json, 3 seeds):
it reconstructs no better than PCA of its latent size (natural 56.4 against 56.7 dB², piano 87.5
against 86.0) and the band code, outside the product, outweighs the lyrics in the direction tracks are
clustered on: NMI natural 0.862 -> 0.798, piano 0.730 -> 0.569. Chosen again on held-back pieces of
natural (scripts/experiments/poe_split.py, poe_split.json), no split both reconstructed below PCA-32
and kept the pooled model's clusters (selection NMI 0.870): clustering the experts' product without the
band code gave 0.756, a band code on half the style numbers 0.803 at 63.6 dB² (PCA 56.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from musiclust.errors import ParameterError
from musiclust.models.base import Batch, BaseVAE, gaussian_nll_sum, kl_sum
from musiclust.models.conv_vae import ConvDecoder, ConvEncoder, ConvVAEConfig, split_code


@dataclass(kw_only=True)
class MVAEPoEConfig(ConvVAEConfig):
    lyrics_dim: int  # TF-IDF vocabulary size V
    lyrics_hidden: int = 256
    # The lyrics likelihood is a multinomial over the vocabulary (the TF-IDF row normalised to sum 1),
    # i.e. one word draw of ~5-7 nats. A mel segment's 16,384 Gaussian terms weigh ~3-4k nats, so near 1
    # the lyrics are drowned and the lyrics expert collapses to the prior; 1000 puts both modalities on
    # the same scale. On the default set (k-means NMI over epochs 5-20): 300 -> 0.75-0.78,
    # 1000 -> 0.75-0.81, 3000 -> 0.71-0.77.
    lyrics_weight: float = 1000.0
    time_dim: Optional[int] = 0  # no time code by default (the module docstring says why)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive_ints("lyrics_dim", "lyrics_hidden")
        if not self.lyrics_weight >= 0:
            raise ParameterError(f"MVAEPoEConfig.lyrics_weight must be >= 0, got {self.lyrics_weight!r}")


def product_of_experts(
    experts: list[tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian product of a standard-normal prior expert and ``experts`` = ``[(mu, logvar, present)]``.

    ``present`` is a ``(B,)`` bool mask (None = present for every sample); an absent expert is left out of
    that sample's product exactly (its precision and weighted mean are replaced by 0, not multiplied by 0,
    so even NaN in an absent expert cannot leak in). Returns ``(mu, logvar)``, each ``(B, latent_dim)``.
    """
    mu0 = experts[0][0]
    precision = torch.ones_like(mu0)  # the prior expert N(0, I): precision 1, mean 0
    weighted_mean = torch.zeros_like(mu0)
    for mu, logvar, present in experts:
        t = torch.exp(-logvar)  # (B, latent_dim) precision
        tm = t * mu
        if present is not None:
            keep = present[:, None]
            t = torch.where(keep, t, torch.zeros_like(t))
            tm = torch.where(keep, tm, torch.zeros_like(tm))
        precision = precision + t
        weighted_mean = weighted_mean + tm
    return weighted_mean / precision, -torch.log(precision)


class MVAEPoE(BaseVAE):
    """Audio expert (conv encoder) x lyrics expert (MLP on TF-IDF) x prior; mel and lyrics decoders.

    Trained with the subsampled ELBO: for every sample the audio-only ELBO (reconstructs the mel from
    the audio posterior), and for samples with lyrics also the joint ELBO (reconstructs both) and the
    lyrics-only ELBO (reconstructs the lyrics). The audio-only term is what keeps embeddings of tracks
    without lyrics (all uploads) good; for those samples the joint ELBO *is* the audio-only one, so it is
    not counted twice. Lyrics reconstruction is a multinomial (softmax cross-entropy) on the TF-IDF row
    normalised to sum 1, the bag-of-words likelihood of Mult-VAE, weighted by ``lyrics_weight``.
    """

    config_class = MVAEPoEConfig
    # The product shrinks every track's mean towards the prior expert's 0 by an amount set by how many
    # experts are present and how sure they are: a track with lyrics lies farther out than the same
    # music without. The norm then encodes "has lyrics / how confident", not style, so tracks are
    # clustered by direction from 0. Same weights, 3 seeds, k-means NMI: natural 0.81 centred -> 0.87 by
    # direction, piano 0.65 -> 0.73 (the audio-only ConvVAE, whose norm does carry content, drops
    # 0.79 -> 0.75 on natural, so it keeps Euclidean).
    cluster_on_direction = True

    def __init__(self, config: MVAEPoEConfig):
        super().__init__(config)
        style, hidden = config.style_dim, config.lyrics_hidden
        self.audio_expert = ConvEncoder(config, style)
        self.lyrics_expert = nn.Sequential(
            nn.Linear(config.lyrics_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * style)
        )
        self.mel_decoder = ConvDecoder(config, config.latent_dim)
        self.lyrics_decoder = nn.Sequential(  # reads the style part: lyrics say nothing of when
            nn.Linear(style, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, config.lyrics_dim)
        )
        self.code = split_code(config, self.audio_expert.head, self.mel_decoder)

    def experts(self, batch: Batch) -> tuple[tuple, tuple, torch.Tensor]:
        """``(audio (mu, logvar), lyrics (mu, logvar), has_lyrics (B,) bool)``, each over the style part.

        Lyrics rows of samples without lyrics are zeroed before the lyrics expert, so whatever they hold
        (zeros, stale values, NaN) the expert's outputs and gradients stay finite; they are then masked out.
        """
        mel = batch["mel"]
        mu_a, logvar_a = self.audio_expert(mel)  # (B, style_dim) each
        lyrics = batch.get("lyrics")
        if lyrics is None:
            lyrics = mel.new_zeros(mel.shape[0], self.config.lyrics_dim)
            has = torch.zeros(mel.shape[0], dtype=torch.bool, device=mel.device)
        else:
            if lyrics.shape != (mel.shape[0], self.config.lyrics_dim):
                raise ParameterError(
                    f"MVAEPoE expects lyrics of shape (B, {self.config.lyrics_dim}), got {tuple(lyrics.shape)}"
                )
            has = batch.get("has_lyrics")
            if has is None:
                raise ParameterError("MVAEPoE needs batch['has_lyrics'] ((B,) bool) alongside batch['lyrics']")
            has = has.bool()
            lyrics = torch.where(has[:, None], lyrics, torch.zeros_like(lyrics))
        mu_l, logvar_l = self.lyrics_expert(lyrics).chunk(2, dim=1)  # (B, style_dim) each
        return (mu_a, logvar_a), (mu_l, logvar_l), has

    def _with_time(self, mel: torch.Tensor, posterior: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The experts' product on the style part, added to the band code, then the time code of ``mel``:
        the whole latent. The band code stays outside the product: the prior expert's pull towards 0
        would otherwise shrink the linear code the decoder reads back, by how sure the experts are."""
        return posterior if self.code is None else self.code.posterior(mel, *posterior)

    def _style(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.code is None else self.code.style(z)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint posterior: prior x audio x (lyrics where present), then the time code."""
        audio, lyrics, has = self.experts(batch)
        return self._with_time(batch["mel"], product_of_experts([(*audio, None), (*lyrics, has)]))

    def _mel(self, z: torch.Tensor) -> torch.Tensor:
        mel = self.mel_decoder(z)  # (B, 1, n_mels, frames)
        return mel if self.code is None else mel + self.code.decode(z)

    def decode(self, z: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"mel": self._mel(z), "lyrics_logits": self.lyrics_decoder(self._style(z))}  # (B, 1, 128, 128), (B, V)

    def embedding(self, mu: torch.Tensor) -> torch.Tensor:
        return self._style(mu)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        audio, lyrics, has = self.experts(batch)
        mel_in = batch["mel"]
        mu, logvar = self._with_time(mel_in, product_of_experts([(*audio, None), (*lyrics, has)]))  # joint, (B, latent_dim)
        mu_a, logvar_a = self._with_time(mel_in, product_of_experts([(*audio, None)]))  # audio-only, (B, latent_dim)
        mu_l, logvar_l = product_of_experts([(*lyrics, None)])  # lyrics-only, used where has, (B, style_dim)
        mu_j, logvar_j, mu_l, logvar_l = mu[has], logvar[has], mu_l[has], logvar_l[has]  # (n_lyrics, ...)
        z_a = self.reparameterize(mu_a, logvar_a)
        z_j = self.reparameterize(mu_j, logvar_j)
        z_l = self.reparameterize(mu_l, logvar_l)
        # One decoder call per modality over every latent that must reconstruct it.
        mel = self._mel(torch.cat([z_a, z_j]))  # (B + n_lyrics, 1, 128, 128)
        words = self.lyrics_decoder(torch.cat([self._style(z_j), z_l]))  # (2 * n_lyrics, V)
        n, k = mu_a.shape[0], mu_j.shape[0]
        return {
            "mu": mu,  # joint posterior of every sample: what embed() returns
            "logvar": logvar,
            "has_lyrics": has,
            "mu_audio": mu_a,
            "logvar_audio": logvar_a,
            "mel_audio": mel[:n],  # (B, 1, 128, 128) from the audio-only posterior
            "mu_joint": mu_j,
            "logvar_joint": logvar_j,
            "mel_joint": mel[n:],  # (n_lyrics, 1, 128, 128) from the joint posterior
            "lyrics_joint": words[:k],  # (n_lyrics, V) logits from the joint posterior
            "mu_lyrics": mu_l,
            "logvar_lyrics": logvar_l,
            "lyrics_only": words[k:],  # (n_lyrics, V) logits from the lyrics-only posterior
        }

    def loss_function(self, batch: Batch, outputs: dict[str, torch.Tensor], kl_weight: float = 1.0) -> dict:
        """Subsampled negative ELBO, summed over its terms and samples, divided by the batch size."""
        mel, has = batch["mel"], outputs["has_lyrics"]
        n = mel.shape[0]
        recon_audio = gaussian_nll_sum(outputs["mel_audio"], mel) + gaussian_nll_sum(outputs["mel_joint"], mel[has])
        recon_audio = recon_audio / n
        kl = (
            kl_sum(outputs["mu_audio"], outputs["logvar_audio"])
            + kl_sum(outputs["mu_joint"], outputs["logvar_joint"])
            + kl_sum(outputs["mu_lyrics"], outputs["logvar_lyrics"])
        ) / n
        if has.any():
            target = batch["lyrics"][has]
            target = target / target.sum(dim=1, keepdim=True).clamp_min(1e-12)  # (n_lyrics, V), rows sum to 1
            joint = multinomial_nll_sum(outputs["lyrics_joint"], target)
            recon_lyrics = (joint + multinomial_nll_sum(outputs["lyrics_only"], target)) / n
        else:
            recon_lyrics = mel.new_zeros(())
        loss = recon_audio + self.config.lyrics_weight * recon_lyrics + kl_weight * self.config.beta * kl
        return {"loss": loss, "recon_audio": recon_audio, "recon_lyrics": recon_lyrics, "kl": kl}


def multinomial_nll_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of word distributions ``target`` (rows sum to 1) under ``softmax(logits)``, summed."""
    return -(target * F.log_softmax(logits, dim=1)).sum()
