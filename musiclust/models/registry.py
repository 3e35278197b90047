"""The model registry: one :class:`ModelSpec` per model name, holding every fact about that model.

This is the only place a model name is written. The pipeline, evaluation, CLI, service, app and
pages read names and facts from :data:`SPECS`; adding a model is one new file in ``models/`` plus
one entry here.

A *model* (a row in the app and the results) is not always a network of its own:
``conv_vae_fusion`` is the trained ``conv_vae`` network followed by the hybrid lyrics join
(:mod:`musiclust.models.hybrid`), so its spec names ``conv_vae`` in :attr:`ModelSpec.reuses`.

Importing the registry imports no network (hence no torch): a spec names its network class by import path
(``"module:Class"``), resolved on first use of :attr:`ModelSpec.network`, and declares the class facts the
app needs before a model is loaded (:attr:`~ModelSpec.conditioned_on_label`, :attr:`~ModelSpec.cluster_on_direction`);
resolving the class checks those against the class's own attributes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from musiclust.errors import ParameterError
from musiclust.models.hybrid import MIN_LYRIC_TRACKS

if TYPE_CHECKING:
    from musiclust.models.base import BaseVAE


@dataclass(frozen=True)
class ConfigInputs:
    """What a model's config, and whether it can train, may depend on: the run's settings and the
    collection's shapes. Built once per preparation (:func:`musiclust.pipeline.config_inputs`)."""

    latent_dim: int
    n_mels: int
    frames: int
    lyrics_dim: int = 0  # TF-IDF vocabulary size; 0 when no track has usable lyrics
    n_labels: int = 0  # groups known for every track; 0 when some track has none
    beta: float = 4.0  # β of the conditioned β-VAE
    n_with_lyrics: int = 0  # tracks whose lyrics hold a known word


def _shape(i: ConfigInputs) -> dict:
    return {"latent_dim": i.latent_dim, "n_mels": i.n_mels, "frames": i.frames}


@dataclass(frozen=True)
class ModelSpec:
    """Every fact about one model. ``network_path`` names the class trained (``"module:Class"``, imported
    on first use of :attr:`network`); ``reuses`` names another model whose trained network this one takes
    as it is (same seed and data would give the same weights). ``conditioned_on_label`` and
    ``cluster_on_direction`` repeat the network class's attributes of those names, so they can be read
    without importing it (checked when the class is resolved)."""

    name: str
    network_path: str
    blurb: str  # one line for the app and the README
    display_order: int  # 0 = offered first in the app
    build_config: Callable[[ConfigInputs], dict]
    uses_lyrics: bool = False  # reads lyrics when a track has them (never requires them)
    needs_labels: bool = False  # cannot train unless every track has a group
    joins_lyrics: bool = False  # the hybrid join (musiclust.models.hybrid) follows the network
    reuses: Optional[str] = None
    needs_pretrained: bool = False  # reads MusiCNN vectors per segment: extracted (cached) before training
    uses_beta: bool = False  # its loss weighs the KL term by the run's β (the retrain form's β field)
    # Its decoder sees the group: scores against that group are flagged, never compared as equals.
    conditioned_on_label: bool = False
    # Tracks are clustered, mapped and compared by the direction of their latent (BaseVAE.cluster_on_direction).
    cluster_on_direction: bool = False

    @property
    def network(self) -> type[BaseVAE]:
        """The network class, imported on first use (this imports torch)."""
        return _network(self)

    @property
    def architecture(self) -> str:
        """The registry name of the network (what a checkpoint's weights are for): the model that trains it."""
        return SPECS[self.reuses].architecture if self.reuses is not None else self.name

    def skip_reason(self, inputs: ConfigInputs) -> Optional[str]:
        """Why this model cannot train on a collection with these ``inputs`` (None: it can)."""
        if self.needs_labels and inputs.n_labels < 2:
            return (f"{self.name} is conditioned on the group, so every track needs one of at least 2 groups "
                    "(sub-folders or a 'genre' column), and some tracks of this collection have none")
        return None

    def fits_lyrics_join(self, inputs: ConfigInputs) -> bool:
        """True when the hybrid join follows the network on this collection: with lyrics on fewer than
        :data:`~musiclust.models.hybrid.MIN_LYRIC_TRACKS` tracks there is no lyrics axis to learn."""
        return self.joins_lyrics and inputs.n_with_lyrics >= MIN_LYRIC_TRACKS

    def note(self, inputs: ConfigInputs) -> Optional[str]:
        """What a person should know about this model trained on this collection, when it is not
        what its blurb says (a lyrics model on a collection without lyrics)."""
        if not self.uses_lyrics:
            return None
        if self.joins_lyrics and not self.fits_lyrics_join(inputs):
            have = "no track has lyrics" if inputs.n_with_lyrics == 0 else f"only {inputs.n_with_lyrics} track(s) have lyrics"
            return f"{have} (the lyrics join needs {MIN_LYRIC_TRACKS}): same as {self.reuses}"
        if inputs.lyrics_dim == 0:
            return "no track has lyrics: trained and placed on audio alone"
        return None


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("basic_vae", "musiclust.models.basic_vae:BasicVAE", "fully connected VAE on log-mel segments (audio only)", 4, _shape),
        ModelSpec("conv_vae", "musiclust.models.conv_vae:ConvVAE", "convolutional VAE on log-mel segments (audio only)", 2, _shape),
        ModelSpec(
            "conv_vae_fusion", "musiclust.models.conv_vae:ConvVAE",
            "convolutional VAE latent joined with reduced lyrics TF-IDF (hybrid fusion; no lyrics = no words)", 1,
            _shape, uses_lyrics=True, joins_lyrics=True, reuses="conv_vae",
        ),
        ModelSpec(
            "mvae_poe", "musiclust.models.mvae_poe:MVAEPoE", "multimodal VAE, product of experts: audio and lyrics, lyrics optional", 0,
            # without any lyrics a 1-word lyrics expert that never sees a word: the audio expert alone
            lambda i: {**_shape(i), "lyrics_dim": max(1, i.lyrics_dim)}, uses_lyrics=True, cluster_on_direction=True,
        ),
        ModelSpec(
            "beta_cvae", "musiclust.models.beta_cvae:BetaCVAE", "β-VAE whose decoder is conditioned on the group label", 3,
            lambda i: {**_shape(i), "n_labels": i.n_labels, "beta": i.beta}, needs_labels=True,
            conditioned_on_label=True, uses_beta=True,
        ),
        ModelSpec(
            "musicnn_vae", "musiclust.models.musicnn_vae:MusiCNNVAE",
            "VAE over the pretrained MusiCNN tagger's view of each segment (frozen front end), with a mel decoder", 5,
            _shape, needs_pretrained=True,
        ),
    )
}
ALL_MODELS: tuple[str, ...] = tuple(SPECS)  # training order: a model that reuses another comes after it
# Trained by default (`train --models all`, the app's retrain). A model that reads pretrained vectors is
# opt-in: its first run extracts MusiCNN for every track (seconds of CPU a 30 s clip, then cached), and
# the default retrain is held to 120 s. Evaluation scores both.
MODEL_NAMES: tuple[str, ...] = tuple(n for n in ALL_MODELS if not SPECS[n].needs_pretrained)
OPT_IN_MODELS: tuple[str, ...] = tuple(n for n in ALL_MODELS if SPECS[n].needs_pretrained)
DISPLAY_ORDER: tuple[str, ...] = tuple(sorted(SPECS, key=lambda n: SPECS[n].display_order))
DEFAULT_MODEL: str = DISPLAY_ORDER[0]  # what the app and `predict` use when none is named
# the models that train a network of their own: what checkpoints record as "architecture"
ARCHITECTURES: tuple[str, ...] = tuple(s.name for s in SPECS.values() if s.reuses is None)
_CLASS_FACTS = ("conditioned_on_label", "cluster_on_direction")  # declared by a spec, checked against its class
_NETWORKS: dict[str, type] = {}  # network_path -> resolved class


def _network(s: ModelSpec) -> type[BaseVAE]:
    """``s``'s network class, imported once; a spec whose declared facts differ from the class's is a TypeError."""
    cls = _NETWORKS.get(s.network_path)
    if cls is None:
        module, _, attr = s.network_path.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        _NETWORKS[s.network_path] = cls
    wrong = [f for f in _CLASS_FACTS if bool(getattr(cls, f)) != getattr(s, f)]
    if wrong:
        raise TypeError(f"the registry entry {s.name} says {', '.join(f'{f}={getattr(s, f)}' for f in wrong)}, "
                        f"but {cls.__name__} says otherwise")
    return cls


def __getattr__(name: str):
    """``NETWORKS`` (network name -> class) and ``NETWORKS_BY_CLASS`` (class -> name), built on first use:
    they import every network, hence torch."""
    if name not in ("NETWORKS", "NETWORKS_BY_CLASS"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    networks = {n: SPECS[n].network for n in ARCHITECTURES}
    globals().update(NETWORKS=networks, NETWORKS_BY_CLASS={cls: n for n, cls in networks.items()})
    return globals()[name]


def _check_registry() -> None:
    """Facts the pipeline relies on, checked when the registry is imported (a wrong entry fails at once);
    the classes' own facts are checked when a class is resolved (:attr:`ModelSpec.network`)."""
    for index, s in enumerate(SPECS.values()):
        if s.reuses is not None and (s.reuses not in ALL_MODELS[:index] or SPECS[s.reuses].network_path != s.network_path
                                     or any(getattr(SPECS[s.reuses], f) != getattr(s, f) for f in _CLASS_FACTS)):
            raise TypeError(f"{s.name} reuses {s.reuses!r}, which must be an earlier entry with the same network")
    trained = [SPECS[n].network_path for n in ARCHITECTURES]
    if len(set(trained)) != len(trained):
        raise TypeError("every network class needs exactly one model that trains it (reuses=None)")


_check_registry()


def spec(name: str) -> ModelSpec:
    """The spec of model ``name``, or a clear error naming the known models."""
    try:
        return SPECS[name]
    except (KeyError, TypeError):
        raise ParameterError(f"unknown model {name!r}; known models: {', '.join(SPECS)}") from None


def training_order(names: Iterable[str]) -> list[str]:
    """``names`` (checked) in the order given, except that a model whose network another requested model
    reuses trains first, so the reuser can take it as it is."""
    names = list(dict.fromkeys(names))
    for name in names:
        spec(name)
    order: list[str] = []
    for name in names:
        reused = SPECS[name].reuses
        if reused in names and reused not in order:
            order.append(reused)
        if name not in order:
            order.append(name)
    return order
