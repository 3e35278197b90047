"""Metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from musiclust.errors import ParameterError
from musiclust.analysis.metrics import (
    external_scores, internal_scores, purity, score_kinds, score_partition, stability, summarize,
)


def test_purity_hand_computed():
    # clusters: 0 -> {a, a, b}, 1 -> {b, b, c}, 2 -> {c}: majorities 2 + 2 + 1 = 5 of 7
    truth = ["a", "a", "b", "b", "b", "c", "c"]
    pred = [0, 0, 0, 1, 1, 1, 2]
    assert purity(truth, pred) == pytest.approx(5 / 7)


def test_purity_perfect_and_single_cluster():
    truth = ["x", "x", "y", "y"]
    assert purity(truth, [3, 3, 7, 7]) == 1.0
    assert purity(truth, [0, 0, 0, 0]) == 0.5


def test_purity_rejects_mismatched_lengths():
    with pytest.raises(ParameterError):
        purity(["a", "b"], [0])


def test_ari_nmi_invariant_to_label_names():
    truth = ["a", "a", "b", "b", "c", "c"]
    scores = external_scores(truth, [5, 5, 1, 1, 9, 9])
    assert scores["ari"] == pytest.approx(1.0)
    assert scores["nmi"] == pytest.approx(1.0)
    # ARI of an independent labelling is ~0 (here exactly computable: every cluster mixes every group)
    assert external_scores(truth, [0, 1, 0, 1, 0, 1])["ari"] < 0.01


def test_internal_scores_separated_blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    labels = np.repeat([0, 1], 20)
    scores = internal_scores(x, labels)
    assert scores["silhouette"] > 0.9
    assert scores["davies_bouldin"] < 0.1
    swapped = internal_scores(x, np.tile([0, 1], 20))
    assert swapped["silhouette"] < 0.1


def test_internal_scores_undefined_for_one_cluster():
    scores = internal_scores(np.zeros((5, 2)), np.zeros(5, int))
    assert all(math.isnan(v) for v in scores.values())


def test_score_partition_ignores_unknown_groups():
    x = np.array([[0.0], [0.1], [5.0], [5.1]])
    scores = score_partition(x, [0, 0, 1, 1], ["a", None, "b", "b"], with_stability=False)
    assert scores["purity"] == 1.0 and scores["nmi"] == pytest.approx(1.0)


def _blobs(seed=0, n=30, k=3, dim=4, distance=20.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, distance, (k, dim))
    return np.concatenate([rng.normal(c, 1.0, (n, dim)) for c in centres]), np.repeat(np.arange(k), n)


def test_stability_is_one_for_a_perfectly_separable_partition():
    x, _ = _blobs()
    assert stability(x, 3, "kmeans", seed=0) == pytest.approx(1.0)


def test_stability_is_lower_on_structureless_noise_and_zero_for_random_labels():
    x, _ = _blobs()
    noise = np.random.default_rng(1).normal(size=x.shape)  # one Gaussian: any 3-way cut is arbitrary
    assert stability(noise, 3, "kmeans", seed=0) < 0.9
    assert abs(stability(x, 3, "random", seed=0)) < 0.05


def test_stability_of_real_clusters_beats_the_same_features_shuffled(real_table):
    """MFCC statistics of the real clips: their clustering is more reproducible than that of the same
    values with each column shuffled independently (which keeps every feature's distribution, not the groups)."""
    from musiclust.analysis.clustering import Standardizer

    x = Standardizer.fit(real_table.mfcc_stats)(real_table.mfcc_stats)
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(column) for column in x.T], axis=1)
    assert stability(x, 4, seed=0) > stability(shuffled, 4, seed=0) + 0.1


def test_stability_rejects_impossible_settings():
    x, _ = _blobs(n=5)
    with pytest.raises(ParameterError, match="subsample"):
        stability(x, 13, seed=0)
    with pytest.raises(ParameterError, match="resamples"):
        stability(x, 3, n_resamples=1)
    with pytest.raises(ParameterError, match="fraction"):
        stability(x, 3, fraction=1.0)


def test_score_partition_marks_which_kinds_it_holds():
    x, truth = _blobs()
    pred = truth[::-1].copy()
    without = score_partition(x, pred)
    assert without["score_kinds"] == "label_free" and score_kinds(without) == ("label_free",)
    assert without["stability"] == pytest.approx(1.0) and without["silhouette"] > 0.5
    assert all(math.isnan(without[m]) for m in ("ari", "nmi", "purity"))
    labelled = score_partition(x, pred, [str(t) for t in truth])
    assert labelled["score_kinds"] == "label_free+labels" and score_kinds(labelled) == ("label_free", "labels")
    assert labelled["nmi"] == pytest.approx(1.0)
    unknown = score_partition(x, pred, [None] * len(pred))  # groups given, none known: still label-free only
    assert unknown["score_kinds"] == "label_free"
    # rows written before the marker existed are read from their numbers
    assert score_kinds({"silhouette": 0.3, "nmi": 0.5}) == ("label_free", "labels")
    assert score_kinds({"silhouette": 0.3, "nmi": math.nan}) == ("label_free",)


def test_summarize_carries_stability():
    rows = [{"model": "m", "seed": s, "stability": v, "score_kinds": "label_free"} for s, v in enumerate([0.8, 1.0])]
    table = summarize(rows).set_index("model")
    assert table.loc["m", "stability"] == pytest.approx(0.9) and table.loc["m", "score_kinds"] == "label_free"


def test_summarize_mean_and_std():
    rows = [{"model": "m", "seed": s, "nmi": v, "ari": v} for s, v in enumerate([0.2, 0.4])]
    table = summarize(rows).set_index("model")
    assert table.loc["m", "nmi"] == pytest.approx(0.3)
    assert table.loc["m", "nmi_std"] == pytest.approx(0.1)
    assert table.loc["m", "seeds"] == 2


def test_clusters_are_numbered_by_their_first_track_whatever_k_means_called_them(real_table):
    """One partition gets one numbering: k-means' own numbers follow its initialisation, so the same clusters
    found after a last-bit change (another CPU's kernels, docs/results/kernels.json) came out renumbered."""
    from sklearn.metrics import adjusted_rand_score

    from musiclust.analysis.clustering import Standardizer, cluster, numbered_in_track_order

    x = Standardizer.fit(real_table.mfcc_stats)(real_table.mfcc_stats)
    labels, centres = cluster(x, 4, seed=0)
    appearing = labels[np.sort(np.unique(labels, return_index=True)[1])]  # each cluster at its first track
    assert appearing.tolist() == [0, 1, 2, 3], "cluster c is the c-th to appear in track order"
    assert np.allclose(centres, np.stack([x[labels == c].mean(axis=0) for c in range(4)]), atol=1e-4), "centres follow their clusters"
    for seed in range(1, 6):  # another name for each cluster: renumbered, the same labels and centres
        perm = np.random.default_rng(seed).permutation(4)
        renamed, moved = numbered_in_track_order(perm[labels], centres[np.argsort(perm)])
        assert np.array_equal(renamed, labels) and np.array_equal(moved, centres)
    same = [s for s in range(1, 6) if adjusted_rand_score(labels, cluster(x, 4, seed=s)[0]) == 1.0]
    assert same, "some other seed finds the same partition"
    assert all(np.array_equal(cluster(x, 4, seed=s)[0], labels) for s in same), "and numbers it the same"
    with_empty, kept = numbered_in_track_order(np.array([2, 2, 0]), np.array([[0.0], [1.0], [2.0]]))
    assert with_empty.tolist() == [0, 0, 1] and kept[:, 0].tolist() == [2.0, 0.0, 1.0], "a cluster without members goes last"
