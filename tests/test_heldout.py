"""The held-out protocol: the pieces kept out of training are placed by a clustering fitted without
them, and every row of ``evaluate`` carries their scores beside the whole collection's (issue 13)."""

import math

import numpy as np
import pytest

from musiclust.analysis.baselines import mfcc_embedding
from musiclust.analysis.clustering import Standardizer, cluster


@pytest.fixture(scope="module")
def half_held_out(real_table):
    from musiclust.pipeline import Settings, prepare

    return prepare(real_table, Settings(latent_dim=8, seed=0, val_fraction=0.5))


def test_a_heldout_track_is_placed_alone_by_centres_fitted_on_the_training_tracks(half_held_out):
    from musiclust.analysis.evaluation import heldout_labels

    prep = half_held_out
    train, val = prep.train_rows, prep.val_rows
    assert len(val) >= 6 and not set(train) & set(val)
    raw = mfcc_embedding(prep.table)
    space = Standardizer.fit(raw[train])(raw)
    together = heldout_labels(space, train, val, prep.k, "kmeans", 0)
    # placing the held-out tracks one by one gives the same clusters: none of them shaped the centres
    assert [int(heldout_labels(space, train, np.array([i]), prep.k, "kmeans", 0)[0]) for i in val] == together.tolist()
    # ... and moving every other held-out track far away changes nothing for the one placed
    moved = space.copy()
    moved[val[1:]] += 100.0
    assert heldout_labels(moved, train, val[:1], prep.k, "kmeans", 0)[0] == together[0]
    # a clustering of all the tracks would have let the held-out ones move the centres
    _, all_centres = cluster(moved, prep.k, "kmeans", 0)
    _, train_centres = cluster(space[train], prep.k, "kmeans", 0)
    assert not np.allclose(np.sort(all_centres, axis=0), np.sort(train_centres, axis=0))


def test_evaluate_rows_carry_heldout_scores_beside_the_collections(real_table):
    from musiclust.analysis.evaluation import evaluate
    from musiclust.pipeline import Settings

    settings = Settings(latent_dim=8, seed=0, epochs=1, val_fraction=0.5)
    summary, rows = evaluate(real_table, ["random", "mfcc_kmeans", "tfidf_kmeans", "conv_vae"], settings, seeds=2)
    n_val = {}
    from musiclust.pipeline import prepare

    for seed in (0, 1):
        prep = prepare(real_table, Settings(**{**settings.__dict__, "seed": seed}))
        n_val[seed] = (len(prep.val_rows), int(prep.has_lyrics[prep.val_rows].sum()))
    for row in rows:
        expected = n_val[row["seed"]][1 if row["model"] == "tfidf_kmeans" else 0]
        assert row["n_heldout"] == expected, row["model"]
        for name in ("heldout_ari", "heldout_nmi", "heldout_purity"):
            assert math.isnan(row[name]) if expected < 2 else -1 <= row[name] <= 1, (row["model"], name)
    scores = summary.set_index("model")
    for model in ("random", "mfcc_kmeans", "conv_vae"):  # averaged over the seeds, not the first seed's
        per_seed = [r["heldout_nmi"] for r in rows if r["model"] == model]
        assert scores.loc[model, "heldout_nmi"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert scores.loc[model, "heldout_nmi_std"] == pytest.approx(np.std(per_seed), abs=1e-12)
