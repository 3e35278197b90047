"""What does training add to conv_vae beyond its linear codes? The untrained network beside the trained one.

``conv_vae`` starts as its band and time codes (models/linear_code.py): with its encoder's mean rows and
its decoder's last layer at 0, the untrained network reconstructs exactly as the codes do and clusters
on the band code. This script scores that untrained network and the trained one, as the pipeline
trains and scores it, with PCA of the latent's size on the same split: held-out reconstruction (dB²),
k-means NMI / ARI (k = the groups), and the epoch whose weights training kept.

    python scripts/experiments/untrained_codes.py --data data/real default --seeds 3
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

from provenance import REPO, mean_std, one_thread, provenance, seeded_splits, write_results  # noqa: E402

MODEL = "conv_vae"
KEYS = ("nmi", "ari", "reconstruction_mse_db")


def untrained(prep) -> dict:
    """The network as it starts: codes fitted on the training tracks, nothing trained."""
    from musiclust.determinism import reproducible
    from musiclust.models import build_model
    from musiclust.models.registry import spec
    from musiclust.pipeline import _finish, model_config

    s = prep.settings
    model = build_model(MODEL, model_config(MODEL, prep), seed=s.seed)
    model.code.fit([prep.segments[i] for i in prep.train_rows], s.seed)
    model.eval()
    with reproducible(s.seed):
        bundle = _finish(spec(MODEL), model, prep, None)
    return {"nmi": bundle.meta["metrics"]["nmi"], "ari": bundle.meta["metrics"]["ari"],
            "reconstruction_mse_db": bundle.meta["reconstruction_mse_db"]}


def trained(prep) -> dict:
    from musiclust.pipeline import train_model

    bundle = train_model(MODEL, prep)
    return {"nmi": bundle.meta["metrics"]["nmi"], "ari": bundle.meta["metrics"]["ari"],
            "reconstruction_mse_db": bundle.meta["reconstruction_mse_db"], "best_epoch": bundle.meta["best_epoch"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="default, default:piano, a folder or a CSV manifest")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "untrained_codes.json")
    args = parser.parse_args(argv)
    one_thread()
    torch.set_num_threads(1)
    from musiclust.data.collection import load_collection
    from musiclust.store.table import featurize

    record = {**provenance(), "what": __doc__.split("\n\n")[0], "model": MODEL, "sets": {}}
    started = time.perf_counter()
    for data in args.data:
        table = featurize(load_collection(data, groups="auto"), jobs=2)
        rows = []
        for seed, prep, pca in seeded_splits(table, args.seeds):
            rows.append({"seed": seed, "pca_reconstruction_mse_db": pca, "untrained": untrained(prep), "trained": trained(prep)})
            print(data, rows[-1], file=sys.stderr, flush=True)
        summary = {state: {k: mean_std([r[state][k] for r in rows]) for k in KEYS} for state in ("untrained", "trained")}
        summary["pca_reconstruction_mse_db"] = float(np.mean([r["pca_reconstruction_mse_db"] for r in rows]))
        record["sets"][data] = {"tracks": len(table), "k": int(prep.k), "per_seed": rows, "summary": summary}
        print(data, summary, flush=True)
    record["seconds"] = time.perf_counter() - started
    write_results(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
