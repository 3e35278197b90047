"""How well can a latent that does not know *when* reconstruct a segment? The floor under the conv VAEs.

``conv_vae``, ``mvae_poe`` and ``beta_cvae`` pool their encoder's feature maps over time (mean and std:
shift invariance, which clustering by style wants), so their latent cannot say where in the segment a
note or a drum hit falls. Whatever the decoder does, it cannot put events in their place. When every
time shift of a segment is equally likely, the reconstruction with the least squared error that knows
no timing is each mel band's mean over the segment, tiled over time. This script scores that, on the
held-out tracks of each seed's split, beside PCA of the latent's size (the issue-13 reference) and
beside the best linear *time-blind* code of that size (PCA of the band means), all through the one
scoring function of the models (``analysis.reconstruction``):

    python scripts/experiments/reconstruction_floor.py --data default default:piano \\
        data/real/report-half.csv --seeds 3 --out docs/results/reconstruction_floor.json

No label is read. If the band means lose more than PCA does, no time-pooled model can beat PCA.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from provenance import REPO, one_thread, provenance, write_results  # noqa: E402


def floors(prep) -> dict:
    """Held-out reconstruction errors (dB², mean over tracks) of PCA, band means and PCA of band means."""
    from sklearn.decomposition import PCA

    from musiclust.analysis.baselines import pca_reconstruction_mse_db
    from musiclust.analysis.reconstruction import mean_reconstruction_mse_db

    table, norm, segs, dim = prep.table, prep.normalizer, prep.segments, prep.settings.latent_dim
    band_means = {i: segs[i].mean(axis=2) for i in range(len(segs))}  # (S_i, n_mels) per track
    fit_on = np.concatenate([band_means[i] for i in prep.train_rows])  # (S, n_mels)
    blind = PCA(n_components=min(dim, *fit_on.shape), random_state=prep.settings.seed).fit(fit_on)

    def tiled(profile: np.ndarray, frames: int) -> np.ndarray:  # (S, n_mels) -> (n_mels, S * frames)
        return np.concatenate([np.repeat(p[:, None], frames, axis=1) for p in profile], axis=1)

    def pairs(code):
        for i in prep.val_rows:
            yield table.mels[i], norm.invert(tiled(code(band_means[i]), segs[i].shape[2]))

    return {
        "pca": pca_reconstruction_mse_db(prep.segment_pca(), table, norm, prep.val_rows, segs),
        "band_mean": mean_reconstruction_mse_db(pairs(lambda m: m)),
        "band_mean_pca": mean_reconstruction_mse_db(pairs(lambda m: blind.inverse_transform(blind.transform(m)))),
        "n_heldout": int(len(prep.val_rows)),
        "latent_dim": dim,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="default, default:piano, a folder or a CSV manifest")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "reconstruction_floor.json")
    args = parser.parse_args(argv)
    one_thread()
    from musiclust.data.collection import load_collection
    from musiclust.pipeline import Settings, prepare
    from musiclust.store.table import featurize

    record = {**provenance(), "what": __doc__.split("\n\n")[0], "sets": {}}
    started = time.perf_counter()
    for spec in args.data:
        table = featurize(load_collection(spec, groups="auto"), jobs=2)
        rows = []
        for seed in range(args.seeds):
            rows.append({"seed": seed, **floors(prepare(table, Settings(seed=seed, latent_dim=args.latent_dim)))})
            print(spec, rows[-1], file=sys.stderr)
        summary = {key: {"mean": float(np.mean([r[key] for r in rows])), "std": float(np.std([r[key] for r in rows]))}
                   for key in ("pca", "band_mean", "band_mean_pca")}
        record["sets"][spec] = {"tracks": len(table), "per_seed": rows, "summary": summary}
    record["seconds"] = time.perf_counter() - started
    write_results(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
