"""The small VAE interface every model follows (after AntixK/PyTorch-VAE), plus the shared loss pieces.

A *batch* is a plain dict of tensors, so one training loop serves every model::

    {"mel": (B, 1, n_mels, frames) float,     # standardised log-mel segment, values ~N(0, 1)
     "lyrics": (B, V) float,                  # optional: L2-normalised TF-IDF
     "has_lyrics": (B,) bool,                 # optional: which rows of "lyrics" are real
     "label": (B,) long,                      # optional: group label (conditioned models only)
     "pretrained": (B, D) float,              # optional: the segment's pretrained-network vector (MusiCNN: D = 250)
     "pretrained_track": (B, D) float}        # optional: the mean of those vectors over the segment's whole track

Each model reads only the keys it needs. Losses are per-sample sums (nats) averaged over the batch,
so their size does not depend on the batch size and the terms of different models compare.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, fields
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from musiclust.errors import ParameterError

Batch = dict[str, torch.Tensor]


@dataclass(kw_only=True)
class VAEConfig:
    """Fields every model has. Every field is JSON-serialisable (tuples come back from JSON as lists)."""

    latent_dim: int = 32
    n_mels: int = 128
    frames: int = 128
    beta: float = 1.0  # weight of the KL term (1 = the plain ELBO)
    # Values for fields a saved config predates, where the field's default would build another network
    # than the one saved (see from_saved). Not a field: a class attribute.
    SAVED_DEFAULTS: ClassVar[dict] = {}

    def __post_init__(self) -> None:
        self.check_positive_ints("latent_dim", "n_mels", "frames")
        if not self.beta >= 0:
            raise ParameterError(f"{type(self).__name__}.beta must be >= 0, got {self.beta!r}")

    def check_positive_ints(self, *names: str) -> None:
        """A :class:`ParameterError` naming the first of ``names`` that is not a positive integer."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ParameterError(f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VAEConfig":
        """Build from a (JSON) dict; unknown or missing required fields are a :class:`ParameterError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(f"unknown {cls.__name__} fields: {unknown}; known: {sorted(known)}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ParameterError(f"{cls.__name__} needs {missing}")
        return cls(**data)

    @classmethod
    def from_saved(cls, data: dict) -> "VAEConfig":
        """:meth:`from_dict` for a config read from a checkpoint: a field it predates takes the value
        that rebuilds the saved network (:attr:`SAVED_DEFAULTS`), not today's default."""
        return cls.from_dict({**cls.SAVED_DEFAULTS, **data})


class BaseVAE(nn.Module, ABC):
    """encode -> reparameterize -> decode, with the ELBO as a dict of named terms.

    Subclasses set ``config_class`` and implement :meth:`encode` and :meth:`decode`; models with more
    than one posterior (the product of experts) override :meth:`forward` and :meth:`loss_function` too.
    """

    config_class: ClassVar[type[VAEConfig]] = VAEConfig
    # True when the decoder sees the group label: the latent is then pushed to drop group information,
    # so its clustering score against that label is not a fair comparison and is flagged.
    conditioned_on_label: ClassVar[bool] = False
    # True when the length of a track's latent mean carries no style information (only how sure the
    # posterior is), so tracks are clustered, mapped and compared by direction (cosine) instead.
    cluster_on_direction: ClassVar[bool] = False

    def __init__(self, config: VAEConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ParameterError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    @abstractmethod
    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logvar)``, each ``(B, latent_dim)``."""

    @abstractmethod
    def decode(self, z: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Reconstructions from ``z``; always has ``"mel"`` of shape ``(B, 1, n_mels, frames)``.

        ``batch`` is passed for conditioning inputs (the label); its ``"mel"`` is never read here.
        """

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """A sample of ``N(mu, exp(logvar))`` while training; ``mu`` itself in eval mode.

        Returning the mean in eval mode makes validation losses, embeddings and reconstructions
        deterministic, which early stopping and the seeded-training guarantee rely on.
        """
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(batch)
        z = self.reparameterize(mu, logvar)
        outputs = self.decode(z, batch)
        outputs.update(mu=mu, logvar=logvar, z=z)
        return outputs

    def loss_function(self, batch: Batch, outputs: dict[str, torch.Tensor], kl_weight: float = 1.0) -> dict:
        """Negative ELBO: Gaussian reconstruction NLL + ``kl_weight * beta * KL``, each a batch mean.

        ``kl_weight`` in [0, 1] is the warm-up factor the training loop ramps to 1; ``"kl"`` is reported
        unweighted so it reads the same during and after warm-up.
        """
        n = batch["mel"].shape[0]
        recon = gaussian_nll_sum(outputs["mel"], batch["mel"]) / n
        kl = kl_sum(outputs["mu"], outputs["logvar"]) / n
        loss = recon + kl_weight * self.config.beta * kl
        return {"loss": loss, "recon_audio": recon, "kl": kl}

    @torch.no_grad()
    def posterior_mean(self, batch: Batch) -> torch.Tensor:
        """The whole posterior mean ``(B, latent_dim)``, what :meth:`decode` reads."""
        with _eval_mode(self):
            mu, _ = self.encode(batch)
        return mu

    def embed(self, batch: Batch) -> torch.Tensor:
        """The track-describing part of the posterior mean, ``(B, embedding dims)``: the deterministic
        latent used for clustering."""
        return self.embedding(self.posterior_mean(batch))

    def embedding(self, mu: torch.Tensor) -> torch.Tensor:
        """The part of a posterior mean ``(B, latent_dim)`` that describes the music: all of it, unless a
        model gives part of its latent to *when* (models/linear_code.py)."""
        return mu

    @torch.no_grad()
    def reconstruct(self, batch: Batch) -> torch.Tensor:
        """The mel segment decoded from the posterior mean, ``(B, 1, n_mels, frames)``."""
        with _eval_mode(self):
            mu, _ = self.encode(batch)
            return self.decode(mu, batch)["mel"]


@contextmanager
def _eval_mode(module: nn.Module):
    """Put ``module`` in eval mode for a block and restore its previous mode after, even on error."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def gaussian_nll_sum(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Unit-variance Gaussian NLL without its constant, ``0.5 * squared error``, summed over everything.

    Unit variance matches inputs standardised to ~N(0, 1) per mel band. Sums (not means) let a model
    add terms over different subsets of a batch and divide once by the batch size.
    """
    return 0.5 * F.mse_loss(recon, target, reduction="sum")


def kl_sum(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over latent dimensions and samples."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
