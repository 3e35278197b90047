"""Models: ``BaseVAE`` and one short file per network, the hybrid lyrics join, and the registry.

:mod:`musiclust.models.registry` holds every fact about every model; here are the helpers that
build a network by its registry name, so configs and checkpoints name a network by a plain string.

Importing this package imports no network and no torch (the registry is read before any model is
needed, e.g. by the app's first page): the classes below and :data:`MODELS` are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Optional, Union

from musiclust.errors import ParameterError
from musiclust.models.registry import ARCHITECTURES, SPECS

if TYPE_CHECKING:
    from musiclust.models.base import BaseVAE, VAEConfig

_LAZY = (  # imported on first use (PEP 562) from the base, the hybrid join or a network module the registry names
    "BaseVAE", "VAEConfig", "BasicVAE", "BasicVAEConfig", "ConvVAE", "ConvVAEConfig", "MVAEPoE", "MVAEPoEConfig",
    "product_of_experts", "BetaCVAE", "BetaCVAEConfig", "HybridFusion", "hybrid_embedding",
)

__all__ = ["MODELS", "build_model", "config_class", "model_name", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        networks = dict.fromkeys(s.network_path.partition(":")[0] for s in SPECS.values())
        for module in (f"{__name__}.base", f"{__name__}.hybrid", *networks):
            found = getattr(importlib.import_module(module), name, None)
            if found is not None:
                return found
    if name == "MODELS":  # network name -> class
        from musiclust.models.registry import NETWORKS

        return NETWORKS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _model_class(name: str) -> type[BaseVAE]:
    if name not in ARCHITECTURES:
        raise ParameterError(f"unknown model {name!r}; known models: {', '.join(ARCHITECTURES)}")
    return SPECS[name].network


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
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)


def model_name(model: BaseVAE) -> str:
    """The registry name of ``model``'s network (what a checkpoint records)."""
    from musiclust.models.registry import NETWORKS_BY_CLASS

    try:
        return NETWORKS_BY_CLASS[type(model)]
    except KeyError:
        raise ParameterError(f"{type(model).__name__} is not a registered model") from None
