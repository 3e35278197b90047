"""Audio + lyrics fusion, two ways.

(a) Hybrid fusion is a post-hoc feature join, not a model: the trained ConvVAE's track embedding is
    concatenated with an LSA reduction of the lyrics TF-IDF (:class:`HybridFusion`,
    :func:`hybrid_embedding`). Training a network for it would add nothing a weighted join does not,
    and a join can be re-weighted without retraining.
(b) :class:`MVAEPoE` is a product-of-experts multimodal VAE (Wu & Goodman 2018, "Multimodal Generative
    Models for Scalable Weakly-Supervised Learning"): each modality's encoder is an expert giving a
    Gaussian over z, and the posterior is the precision-weighted product of the experts present and a
    standard-normal prior expert. A track without lyrics is encoded by audio and prior alone, by
    design, never by a zero lyrics vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy import sparse
from torch import nn
from torch.nn import functional as F

from musiclust.errors import ParameterError
from musiclust.models.base import Batch, BaseVAE, gaussian_nll_sum, kl_sum
from musiclust.models.conv_vae import ConvDecoder, ConvEncoder, ConvVAEConfig

MISSING_LYRICS = ("apart", "centre")  # where hybrid fusion puts a track without lyrics (see HybridFusion)


def check_missing_lyrics(value: str, name: str = "missing_lyrics") -> None:
    """A clear error for a value outside :data:`MISSING_LYRICS` (checked by ``Settings`` before any work)."""
    if value not in MISSING_LYRICS:
        raise ParameterError(f"{name} must be one of {', '.join(MISSING_LYRICS)}, got {value!r}")


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

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lyrics_dim", "lyrics_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ParameterError(f"MVAEPoEConfig.{name} must be a positive integer, got {value!r}")
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
        latent, hidden = config.latent_dim, config.lyrics_hidden
        self.audio_expert = ConvEncoder(config, latent)
        self.lyrics_expert = nn.Sequential(
            nn.Linear(config.lyrics_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * latent)
        )
        self.mel_decoder = ConvDecoder(config, latent)
        self.lyrics_decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, config.lyrics_dim)
        )

    def experts(self, batch: Batch) -> tuple[tuple, tuple, torch.Tensor]:
        """``(audio (mu, logvar), lyrics (mu, logvar), has_lyrics (B,) bool)``.

        Lyrics rows of samples without lyrics are zeroed before the lyrics expert, so whatever they hold
        (zeros, stale values, NaN) the expert's outputs and gradients stay finite; they are then masked out.
        """
        mel = batch["mel"]
        mu_a, logvar_a = self.audio_expert(mel)  # (B, latent_dim) each
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
        mu_l, logvar_l = self.lyrics_expert(lyrics).chunk(2, dim=1)  # (B, latent_dim) each
        return (mu_a, logvar_a), (mu_l, logvar_l), has

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint posterior: prior x audio x (lyrics where present)."""
        audio, lyrics, has = self.experts(batch)
        return product_of_experts([(*audio, None), (*lyrics, has)])

    def decode(self, z: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"mel": self.mel_decoder(z), "lyrics_logits": self.lyrics_decoder(z)}  # (B, 1, 128, 128), (B, V)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        audio, lyrics, has = self.experts(batch)
        mu, logvar = product_of_experts([(*audio, None), (*lyrics, has)])  # joint, (B, latent_dim)
        mu_a, logvar_a = product_of_experts([(*audio, None)])  # audio-only, (B, latent_dim)
        mu_l, logvar_l = product_of_experts([(*lyrics, None)])  # lyrics-only, used where has
        mu_j, logvar_j, mu_l, logvar_l = mu[has], logvar[has], mu_l[has], logvar_l[has]  # (n_lyrics, latent_dim)
        z_a = self.reparameterize(mu_a, logvar_a)
        z_j = self.reparameterize(mu_j, logvar_j)
        z_l = self.reparameterize(mu_l, logvar_l)
        # One decoder call per modality over every latent that must reconstruct it.
        mel = self.mel_decoder(torch.cat([z_a, z_j]))  # (B + n_lyrics, 1, 128, 128)
        words = self.lyrics_decoder(torch.cat([z_j, z_l]))  # (2 * n_lyrics, V)
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


@dataclass
class HybridFusion:
    """The hybrid-fusion join, fitted once on a collection and reusable for new tracks.

    ``audio block (N, d_a) ++ weight * lyrics block (N, k) [++ weight * no-words axis (N, 1)]``, where the
    audio block is the ConvVAE track embedding and the lyrics block the LSA (truncated SVD) of the TF-IDF
    rows of tracks with lyrics. Each block is centred and divided by the square root of its total
    variance (not z-scored per dimension, which would blow up inactive VAE dimensions and minor LSA
    components to full weight), so with ``weight = 1`` both blocks contribute equally to squared distances.

    Where a track without lyrics goes is ``missing_lyrics``:

    * ``"apart"`` (the default; what a zero TF-IDF row does in a plain join, where it is equally far
      from every unit-length text): one more axis, "no words", on which such tracks stand at
      ``weight`` and lyric-bearing tracks at 0. A track without words is then, on average, as far from
      a text as two texts are from each other (both ``2 * weight**2`` in squared distance), instead of
      at the texts' average. Absence
      of words is treated as information: right for instrumental music, wrong where lyrics are merely
      not supplied (then use ``"centre"``, or the product of experts, which encodes such a track by its
      audio alone by design).
    * ``"centre"``: a lyrics block of 0, the centre of the lyric-bearing tracks, so their place among
      lyric-bearing tracks is set by audio alone. Among themselves they are 0 apart in the lyrics block,
      which draws them together: on the default set unrelated instrumental groups then share clusters.

    Do not z-score the result per dimension afterwards: that undoes ``weight``. All fields are plain
    arrays, floats and strings, so a checkpoint stores them without pickle.
    """

    audio_mean: np.ndarray  # (d_a,)
    audio_scale: float
    components: np.ndarray  # (k, V) LSA directions
    lyrics_mean: np.ndarray  # (k,)
    lyrics_scale: float
    weight: float
    missing_lyrics: str = "centre"  # what checkpoints written before the choice existed did

    def __post_init__(self) -> None:
        check_missing_lyrics(self.missing_lyrics)

    @classmethod
    def fit(
        cls,
        audio_mu: np.ndarray,
        tfidf: np.ndarray,
        has_lyrics: np.ndarray,
        weight: float = 0.5,
        n_components: int = 16,
        seed: int = 0,
        missing_lyrics: str = "apart",
    ) -> "HybridFusion":
        audio_mu, tfidf, has_lyrics = _check_hybrid_inputs(audio_mu, tfidf, has_lyrics)
        if not weight >= 0:
            raise ParameterError(f"hybrid weight must be >= 0, got {weight!r}")
        audio_mean = audio_mu.mean(axis=0)
        audio_scale = _block_scale(audio_mu - audio_mean)
        rows = tfidf[has_lyrics]
        k = min(n_components, rows.shape[0] - 1, tfidf.shape[1] - 1)
        if k < 1:  # fewer than 2 lyric-bearing tracks or a 1-word vocabulary: no lyrics axis to learn
            components = np.zeros((0, tfidf.shape[1]), dtype=np.float32)
        else:
            from sklearn.decomposition import TruncatedSVD  # here: serving never fits, and importing sklearn is slow

            components = TruncatedSVD(k, random_state=seed).fit(rows).components_.astype(np.float32)
        coords = np.asarray(rows @ components.T)  # (n_lyrics, k)
        lyrics_mean = coords.mean(axis=0) if len(coords) else np.zeros(len(components), dtype=np.float32)
        return cls(
            audio_mean, audio_scale, components, lyrics_mean, _block_scale(coords - lyrics_mean), float(weight), missing_lyrics
        )

    def __call__(self, audio_mu: np.ndarray, tfidf: np.ndarray, has_lyrics: np.ndarray) -> np.ndarray:
        """``(N, d_a + k [+ 1])`` float32 hybrid embedding of any tracks (collection or new uploads)."""
        audio_mu, tfidf, has_lyrics = _check_hybrid_inputs(audio_mu, tfidf, has_lyrics)
        if audio_mu.shape[1] != self.audio_mean.shape[0] or tfidf.shape[1] != self.components.shape[1]:
            raise ParameterError(
                f"hybrid fusion was fitted on {self.audio_mean.shape[0]}-d audio and {self.components.shape[1]}-word "
                f"lyrics, got {audio_mu.shape[1]} and {tfidf.shape[1]}"
            )
        audio = (audio_mu - self.audio_mean) / self.audio_scale
        lyrics = (np.asarray(tfidf @ self.components.T) - self.lyrics_mean) / self.lyrics_scale  # (N, k)
        lyrics[~has_lyrics] = 0.0
        blocks = [audio, self.weight * lyrics]  # (N, d_a), (N, k)
        if self.missing_lyrics == "apart":
            blocks.append(self.weight * (~has_lyrics).astype(np.float32)[:, None])  # (N, 1) the no-words axis
        return np.concatenate(blocks, axis=1).astype(np.float32)


def hybrid_embedding(
    audio_mu: np.ndarray, lyrics_feats: np.ndarray, has_lyrics: np.ndarray, weight: float = 0.5, missing_lyrics: str = "apart"
) -> np.ndarray:
    """Hybrid fusion of a whole collection in one call: ``HybridFusion.fit(...)`` applied to its own input.

    ``audio_mu`` is ``(N, d_a)`` ConvVAE track embeddings, ``lyrics_feats`` the ``(N, V)`` TF-IDF and
    ``has_lyrics`` the ``(N,)`` mask; see :class:`HybridFusion` for scaling and tracks without lyrics.
    """
    fusion = HybridFusion.fit(audio_mu, lyrics_feats, has_lyrics, weight, missing_lyrics=missing_lyrics)
    return fusion(audio_mu, lyrics_feats, has_lyrics)


def _block_scale(centred: np.ndarray) -> float:
    """Square root of the total variance of a centred block (1 when it has none, to avoid 0/0)."""
    total = float((centred**2).sum(axis=1).mean()) if len(centred) else 0.0
    return float(np.sqrt(total)) if total > 1e-12 else 1.0


def _check_hybrid_inputs(audio_mu, tfidf, has_lyrics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    audio_mu = np.asarray(audio_mu, dtype=np.float32)
    # a collection's TF-IDF stays sparse (CSR): only its (N, k) projection is dense
    tfidf = sparse.csr_matrix(tfidf, dtype=np.float32) if sparse.issparse(tfidf) else np.asarray(tfidf, dtype=np.float32)
    has_lyrics = np.asarray(has_lyrics, dtype=bool)
    n = audio_mu.shape[0]
    if audio_mu.ndim != 2 or tfidf.ndim != 2 or tfidf.shape[0] != n or has_lyrics.shape != (n,):
        raise ParameterError(
            f"hybrid fusion needs audio (N, d), lyrics (N, V) and has_lyrics (N,); got {audio_mu.shape}, "
            f"{tfidf.shape}, {has_lyrics.shape}"
        )
    return audio_mu, tfidf, has_lyrics
