"""Metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from musiclust.errors import ParameterError
from musiclust.analysis.metrics import external_scores, internal_scores, purity, score_partition, summarize


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
    scores = score_partition(x, [0, 0, 1, 1], ["a", None, "b", "b"])
    assert scores["purity"] == 1.0 and scores["nmi"] == pytest.approx(1.0)


def test_summarize_mean_and_std():
    rows = [{"model": "m", "seed": s, "nmi": v, "ari": v} for s, v in enumerate([0.2, 0.4])]
    table = summarize(rows).set_index("model")
    assert table.loc["m", "nmi"] == pytest.approx(0.3)
    assert table.loc["m", "nmi_std"] == pytest.approx(0.1)
    assert table.loc["m", "seeds"] == 2
