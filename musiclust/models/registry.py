"""The model registry: one :class:`ModelSpec` per model name, holding every fact about that model.

This is the only place a model name is written. The pipeline, evaluation, CLI, service, app and
pages read names and facts from :data:`SPECS`; adding a model is one new file in ``models/`` plus
one entry here.

A *model* (a row in the app and the results) is not always a network of its own:
``conv_vae_fusion`` is the trained ``conv_vae`` network followed by the hybrid lyrics join
(:mod:`musiclust.models.hybrid`), so its spec names ``conv_vae`` in :attr:`ModelSpec.reuses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from musiclust.errors import ParameterError
from musiclust.models.base import BaseVAE
from musiclust.models.basic_vae import BasicVAE
from musiclust.models.beta_cvae import BetaCVAE
from musiclust.models.conv_vae import ConvVAE
from musiclust.models.mvae_poe import MVAEPoE
from musiclust.models.musicnn_vae import MusiCNNVAE


@dataclass(frozen=True)
class ConfigInputs:
    """What a model's config may be built from: the run's settings and the collection's shapes."""

    latent_dim: int
    n_mels: int
    frames: int
    lyrics_dim: int = 0  # TF-IDF vocabulary size; 0 when no track has usable lyrics
    n_labels: int = 0  # groups known for every track; 0 when some track has none
    beta: float = 4.0  # β of the conditioned β-VAE


def _shape(i: ConfigInputs) -> dict:
    return {"latent_dim": i.latent_dim, "n_mels": i.n_mels, "frames": i.frames}


@dataclass(frozen=True)
class ModelSpec:
    """Every fact about one model. ``network`` is the class trained; ``reuses`` names another model
    whose trained network this one takes as it is (same seed and data would give the same weights)."""

    name: str
    network: type[BaseVAE]
    blurb: str  # one line for the app and the README
    display_order: int  # 0 = offered first in the app
    build_config: Callable[[ConfigInputs], dict]
    uses_lyrics: bool = False  # reads lyrics when a track has them (never requires them)
    needs_labels: bool = False  # cannot train unless every track has a group
    joins_lyrics: bool = False  # the hybrid join (musiclust.models.hybrid) follows the network
    reuses: Optional[str] = None
    needs_pretrained: bool = False  # reads MusiCNN vectors per segment: extracted (cached) before training

    @property
    def conditioned_on_label(self) -> bool:
        """Its decoder sees the group: scores against that group are flagged, never compared as equals."""
        return self.network.conditioned_on_label

    @property
    def cluster_on_direction(self) -> bool:
        return self.network.cluster_on_direction

    @property
    def architecture(self) -> str:
        """The registry name of the network class (what a checkpoint's weights are for)."""
        return NETWORKS_BY_CLASS[self.network]


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("basic_vae", BasicVAE, "fully connected VAE on log-mel segments (audio only)", 4, _shape),
        ModelSpec("conv_vae", ConvVAE, "convolutional VAE on log-mel segments (audio only)", 2, _shape),
        ModelSpec(
            "conv_vae_fusion", ConvVAE,
            "convolutional VAE latent joined with reduced lyrics TF-IDF (hybrid fusion; no lyrics = no words)", 1,
            _shape, uses_lyrics=True, joins_lyrics=True, reuses="conv_vae",
        ),
        ModelSpec(
            "mvae_poe", MVAEPoE, "multimodal VAE, product of experts: audio and lyrics, lyrics optional", 0,
            lambda i: {**_shape(i), "lyrics_dim": max(1, i.lyrics_dim)}, uses_lyrics=True,
        ),
        ModelSpec(
            "beta_cvae", BetaCVAE, "β-VAE whose decoder is conditioned on the group label", 3,
            lambda i: {**_shape(i), "n_labels": i.n_labels, "beta": i.beta}, needs_labels=True,
        ),
        ModelSpec(
            "musicnn_vae", MusiCNNVAE,
            "VAE over the pretrained MusiCNN tagger's view of each segment (frozen front end), with a mel decoder", 5,
            _shape, needs_pretrained=True,
        ),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(SPECS)  # training order: a model that reuses another comes after it
DISPLAY_ORDER: tuple[str, ...] = tuple(sorted(SPECS, key=lambda n: SPECS[n].display_order))
# network name -> class, what checkpoints record as "architecture"
NETWORKS: dict[str, type[BaseVAE]] = {"basic_vae": BasicVAE, "conv_vae": ConvVAE, "mvae_poe": MVAEPoE, "beta_cvae": BetaCVAE, "musicnn_vae": MusiCNNVAE}
NETWORKS_BY_CLASS: dict[type[BaseVAE], str] = {cls: name for name, cls in NETWORKS.items()}


def spec(name: str) -> ModelSpec:
    """The spec of model ``name``, or a clear error naming the known models."""
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ParameterError(f"unknown model {name!r}; known models: {', '.join(SPECS)}") from None
