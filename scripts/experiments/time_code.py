"""Can a conv VAE that clusters by style also reconstruct as well as PCA of its latent size? Measured, not adopted.

``reconstruction_floor.py`` showed that a latent that does not know *when* (the conv encoders pool over
time) cannot reconstruct held-out tracks as well as PCA of its size, however well it learned. This
script measures the way round it that keeps the pooled code: give part of the latent to a fixed linear
code of *when*, and cluster on the rest.

Variants of ``conv_vae`` (latent 32 in all; a track's embedding is the mean of its segments' *style* part):

* ``pooled``: the model as it ships, 32 pooled dimensions, all style.
* ``time16``: 16 pooled style dimensions + 16 of a fixed code: the whitened PCA of the segment's
  deviations from its own band means (what the pooled half cannot know), fitted on the training tracks.
  The decoder reads all 32 and adds the code's linear reconstruction. Only the code's posterior variance
  is learned. Linear codes split this way (band means' PCA for style, deviations' PCA for time) score
  about as PCA does: selection half, seed 0, style 8/12/16/20/24 of 32 gave 75.4/73.5/72.2/71.7/72.3 dB²
  against PCA's 73.0; default set 16/16 57.6 against 57.3.
* ``time16_band``: ``time16`` whose style half also starts as a fixed code (the whitened PCA of the band
  means), the conv encoder adding to it, the decoder adding its linear reconstruction: the BasicVAE's
  way of starting from PCA (models/basic_vae.py), on the style half.

Every variant is scored by the pipeline's own functions (held-out reconstruction MSE in dB², k-means
NMI / ARI on the collection, k = the groups), beside PCA of 32 components on the same split::

    python scripts/experiments/time_code.py --data data/real/selection-half.csv default --seeds 3 \\
        --out docs/results/time_code.json

The real set's selection half is where choices are made; the default set is a report set, here only to
say whether the trade-off holds there too. No variant is adopted by the product (see ``verdict``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from provenance import REPO, mean_std, one_thread, provenance, seeded_splits, write_results  # noqa: E402

from musiclust.models.conv_vae import ConvDecoder, ConvEncoder, ConvVAE  # noqa: E402

VARIANCE_FLOOR = 1.0  # as BasicVAE's linear code: a whitened component's std is at least 1
LOGVAR_START = -4.0
VARIANTS = ("pooled", "time16", "time16_band", "time16_band_zero")
TIME_DIM = 16


class FixedCode(nn.Module):
    """A fixed, whitened linear code of a view of the segment: ``"time"`` (the deviations from each band's
    mean, (n_mels * frames)) or ``"band"`` (each band's mean, (n_mels,)). Buffers, never trained, except
    the posterior's log-variance."""

    def __init__(self, view: str, dim: int, n_mels: int, frames: int):
        super().__init__()
        self.view, self.shape = view, (1, n_mels, frames)
        size = n_mels * frames if view == "time" else n_mels
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("basis", torch.zeros(dim, size))
        self.register_buffer("scale", torch.ones(dim))
        self.logvar = nn.Parameter(torch.full((dim,), LOGVAR_START))

    @staticmethod
    def view_of(view: str, segs: np.ndarray) -> np.ndarray:
        """``(S, n_mels, frames)`` -> ``(S, size)``: what the code of ``view`` encodes."""
        bands = segs.mean(axis=2, keepdims=True)
        return (segs - bands).reshape(len(segs), -1) if view == "time" else bands[:, :, 0]

    @torch.no_grad()
    def fit(self, views: np.ndarray, seed: int) -> "FixedCode":
        from sklearn.decomposition import PCA

        n = min(len(self.scale), *views.shape)
        pca = PCA(n_components=n, svd_solver="randomized", random_state=seed).fit(views)
        self.mean.copy_(torch.as_tensor(pca.mean_, dtype=torch.float32))
        self.basis.zero_()
        self.basis[:n].copy_(torch.as_tensor(pca.components_, dtype=torch.float32))
        self.scale.fill_(1.0)
        self.scale[:n].copy_(torch.as_tensor(np.sqrt(np.maximum(pca.explained_variance_, VARIANCE_FLOOR)), dtype=torch.float32))
        return self

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bands = mel.mean(dim=3, keepdim=True)  # (B, 1, n_mels, 1)
        x = (mel - bands).flatten(1) if self.view == "time" else bands.flatten(1)  # (B, size)
        mu = (x - self.mean) @ self.basis.T / self.scale  # (B, dim)
        return mu, self.logvar.expand_as(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = (z * self.scale) @ self.basis + self.mean  # (B, size)
        if self.view == "time":
            return x.view(-1, *self.shape)
        return x[:, None, :, None].expand(-1, *self.shape)  # each band's level, tiled over the frames


class SplitConvVAE(ConvVAE):
    """ConvVAE whose latent is ``style`` (pooled; optionally a band-means code plus the conv's correction)
    followed by ``time`` (the fixed deviations code); its embedding is the style part."""

    def __init__(self, config, band: bool, zero_decoder: bool = False):
        super().__init__(config)
        self.style_dim = config.latent_dim - TIME_DIM
        self.encoder = ConvEncoder(config, self.style_dim)
        self.decoder = ConvDecoder(config, config.latent_dim)
        self.time_code = FixedCode("time", TIME_DIM, config.n_mels, config.frames)
        self.band_code = FixedCode("band", self.style_dim, config.n_mels, config.frames) if band else None
        if band:  # the conv starts adding nothing to the band code: the untrained model is the linear codes
            with torch.no_grad():
                self.encoder.head.weight[: self.style_dim].zero_()
                self.encoder.head.bias[: self.style_dim].zero_()
        if zero_decoder:  # the decoder also starts adding nothing: the untrained model reconstructs as the codes
            with torch.no_grad():
                out = self.decoder.deconvs[-2]
                out.weight.zero_()
                out.bias.zero_()

    def fit_codes(self, segments: list, seed: int) -> None:
        segs = np.concatenate(segments)  # (S, n_mels, frames)
        self.time_code.fit(FixedCode.view_of("time", segs), seed)
        if self.band_code is not None:
            self.band_code.fit(FixedCode.view_of("band", segs), seed)

    def encode(self, batch):
        mel = batch["mel"]
        mu_s, logvar_s = self.encoder(mel)  # (B, style_dim) each
        if self.band_code is not None:
            mu_s = mu_s + self.band_code(mel)[0]
        mu_t, logvar_t = self.time_code(mel)  # (B, TIME_DIM) each
        return torch.cat([mu_s, mu_t], dim=1), torch.cat([logvar_s, logvar_t], dim=1)

    def decode(self, z, batch):
        mel = self.decoder(z) + self.time_code.decode(z[:, self.style_dim:])  # (B, 1, n_mels, frames)
        if self.band_code is not None:
            mel = mel + self.band_code.decode(z[:, : self.style_dim])
        return {"mel": mel}

    @torch.no_grad()
    def embed(self, batch):
        return super().embed(batch)[:, : self.style_dim]


def run_variant(variant: str, prep) -> dict:
    """Train one variant on ``prep`` as the pipeline trains conv_vae, and score it as the pipeline does."""
    from musiclust.models import build_model
    from musiclust.models.registry import spec
    from musiclust.models.training import TrainConfig, fit
    from musiclust.pipeline import _finish, model_config

    s, conv = prep.settings, spec("conv_vae")
    started = time.perf_counter()
    model = build_model("conv_vae", model_config("conv_vae", prep), seed=s.seed)
    if variant != "pooled":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            model = SplitConvVAE(model.config, band=variant.startswith("time16_band"), zero_decoder=variant.endswith("_zero"))
        model.fit_codes([prep.segments[i] for i in prep.train_rows], s.seed)
    result = fit(model, prep.data(prep.train_rows), prep.data(prep.val_rows), TrainConfig(batch_size=s.batch_size, seed=s.seed))
    bundle = _finish(conv, model, prep, None)
    metrics = bundle.meta["metrics"]
    return {"variant": variant, "nmi": metrics["nmi"], "ari": metrics["ari"],
            "reconstruction_mse_db": bundle.meta["reconstruction_mse_db"], "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early, "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="default, default:piano, a folder or a CSV manifest")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "time_code.json")
    args = parser.parse_args(argv)
    one_thread()
    torch.set_num_threads(1)
    from musiclust.data.collection import load_collection
    from musiclust.store.table import featurize

    from musiclust.models import registry

    registry.NETWORKS_BY_CLASS[SplitConvVAE] = "conv_vae"  # fit() names what it trains: a variant of conv_vae
    variants = args.variants.split(",")
    record = {**provenance(), "what": __doc__.split("\n\n")[0], "sets": {}}
    started = time.perf_counter()
    for spec_ in args.data:
        table = featurize(load_collection(spec_, groups="auto"), jobs=2)
        rows = []
        for seed, prep, pca in seeded_splits(table, args.seeds):
            for variant in variants:
                rows.append({"seed": seed, "pca_reconstruction_mse_db": pca, **run_variant(variant, prep)})
                print(spec_, rows[-1], file=sys.stderr, flush=True)
        summary = {v: {key: mean_std([r[key] for r in rows if r["variant"] == v])
                       for key in ("nmi", "ari", "reconstruction_mse_db", "pca_reconstruction_mse_db")} for v in variants}
        record["sets"][spec_] = {"tracks": len(table), "k": int(prep.k), "per_seed": rows, "summary": summary}
    record["seconds"] = time.perf_counter() - started
    write_results(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
