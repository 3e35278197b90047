"""Models: ``BaseVAE`` and one short file per network, the hybrid lyrics join, and the registry.

:mod:`musiclust.models.registry` holds every fact about every model; here are the helpers that
build a network by its registry name, so configs and checkpoints name a network by a plain string.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from musiclust.errors import ParameterError
from musiclust.models.base import BaseVAE, VAEConfig
from musiclust.models.basic_vae import BasicVAE, BasicVAEConfig
from musiclust.models.beta_cvae import BetaCVAE, BetaCVAEConfig
from musiclust.models.conv_vae import ConvVAE, ConvVAEConfig
from musiclust.models.hybrid import HybridFusion, hybrid_embedding
from musiclust.models.mvae_poe import MVAEPoE, MVAEPoEConfig, product_of_experts
from musiclust.models.registry import NETWORKS, NETWORKS_BY_CLASS

MODELS = NETWORKS  # network name -> class

__all__ = [
    "MODELS",
    "BaseVAE",
    "VAEConfig",
    "build_model",
    "config_class",
    "model_name",
    "BasicVAE",
    "BasicVAEConfig",
    "ConvVAE",
    "ConvVAEConfig",
    "MVAEPoE",
    "MVAEPoEConfig",
    "BetaCVAE",
    "BetaCVAEConfig",
    "HybridFusion",
    "hybrid_embedding",
    "product_of_experts",
]


def _model_class(name: str) -> type[BaseVAE]:
    try:
        return NETWORKS[name]
    except (KeyError, TypeError):
        raise ParameterError(f"unknown model {name!r}; known models: {', '.join(NETWORKS)}") from None


def config_class(name: str) -> type[VAEConfig]:
    """The config dataclass of network ``name``."""
    return _model_class(name).config_class


def build_model(name: str, config: Union[dict, VAEConfig, None] = None, seed: Optional[int] = None) -> BaseVAE:
    """A fresh network ``name`` from a config dict (JSON) or dataclass; missing fields take their defaults.

    With ``seed`` the weights are initialised from that seed without touching the global RNG, so the
    same (name, config, seed) always gives bit-identical initial weights.
    """
    cls = _model_class(name)
    if config is None:
        config = {}
    if isinstance(config, dict):
        config = cls.config_class.from_dict(config)
    elif not isinstance(config, cls.config_class):
        raise ParameterError(f"model {name!r} needs a {cls.config_class.__name__} or dict, got {type(config).__name__}")
    if seed is None:
        return cls(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)


def model_name(model: BaseVAE) -> str:
    """The registry name of ``model``'s network (what a checkpoint records)."""
    try:
        return NETWORKS_BY_CLASS[type(model)]
    except KeyError:
        raise ParameterError(f"{type(model).__name__} is not a registered model") from None
