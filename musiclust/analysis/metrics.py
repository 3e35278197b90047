"""Clustering scores with scikit-learn, and tables of mean ± std over seeds.

Internal scores (silhouette, Calinski-Harabasz, Davies-Bouldin) are computed in the space the
clusters were found in; external scores (ARI, NMI, purity) against the group labels.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from musiclust.analysis.clustering import SILHOUETTE_SAMPLE
from musiclust.errors import ParameterError

# scikit-learn is imported where a score is computed: importing it is slow, and the app imports this
# module (through the pipeline) on every first page without scoring anything (benchmark, app start).

INTERNAL = ("silhouette", "calinski_harabasz", "davies_bouldin")
EXTERNAL = ("ari", "nmi", "purity")
METRICS = INTERNAL + EXTERNAL
HIGHER_IS_BETTER = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False, "ari": True, "nmi": True, "purity": True}


def purity(labels_true: Sequence, labels_pred: Sequence) -> float:
    """Share of tracks whose cluster's majority group is their own group."""
    labels_true, labels_pred = np.asarray(labels_true), np.asarray(labels_pred)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ParameterError("purity needs two 1-D label arrays of the same length")
    if labels_true.size == 0:
        raise ParameterError("purity of an empty labelling is undefined")
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(labels_true, labels_pred)  # (n_groups, n_clusters)
    return float(table.max(axis=0).sum() / table.sum())


def internal_scores(space: np.ndarray, labels: Sequence, silhouette_sample: int = SILHOUETTE_SAMPLE, seed: int = 0) -> dict[str, float]:
    """Scores of the partition in its own space; NaN where undefined (one cluster, or one per point).

    The silhouette needs all pairwise distances (O(N^2): ~40 GB of work at 100k tracks), so above
    ``silhouette_sample`` tracks it is computed on a seeded uniform sample of that many, and the scores
    then carry ``silhouette_sample`` (the sample size) to say so. Calinski-Harabasz and Davies-Bouldin
    are O(N k) and always use every track."""
    labels = np.asarray(labels)
    n_clusters = len(np.unique(labels))
    if not 2 <= n_clusters <= len(labels) - 1:
        return {name: math.nan for name in INTERNAL}
    from sklearn import metrics as skm

    sampled = len(labels) > silhouette_sample
    scores = {
        "silhouette": float(skm.silhouette_score(space, labels, sample_size=silhouette_sample if sampled else None, random_state=seed)),
        "calinski_harabasz": float(skm.calinski_harabasz_score(space, labels)),
        "davies_bouldin": float(skm.davies_bouldin_score(space, labels)),
    }
    if sampled:
        scores["silhouette_sample"] = int(silhouette_sample)
    return scores


def external_scores(labels_true: Sequence, labels_pred: Sequence) -> dict[str, float]:
    """Agreement with the known groups (tracks without a group must be removed by the caller)."""
    from sklearn import metrics as skm

    return {
        "ari": float(skm.adjusted_rand_score(labels_true, labels_pred)),
        "nmi": float(skm.normalized_mutual_info_score(labels_true, labels_pred)),
        "purity": purity(labels_true, labels_pred),
    }


def score_partition(space: np.ndarray, labels_pred: Sequence, labels_true: Optional[Sequence] = None) -> dict[str, float]:
    """All six scores; the external ones only over tracks whose group is known (``None`` = unknown)."""
    scores = internal_scores(space, labels_pred)
    if labels_true is not None:
        known = np.array([g is not None for g in labels_true])
        if known.any():
            truth = np.asarray(labels_true, dtype=object)[known].astype(str)
            scores.update(external_scores(truth, np.asarray(labels_pred)[known]))
    for name in EXTERNAL:
        scores.setdefault(name, math.nan)
    return scores


def summarize(rows: Iterable[dict], by: str = "model") -> pd.DataFrame:
    """Mean and ``*_std`` of every metric per ``by`` value, from one row per (model, seed)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise ParameterError("no scores to summarize")
    present = [m for m in METRICS if m in frame]
    grouped = frame.groupby(by, sort=False)
    table = grouped[present].mean()
    stds = grouped[present].std(ddof=0).add_suffix("_std")
    extra = [c for c in frame.columns if c not in present and c not in (by, "seed")]
    firsts = grouped[extra].first() if extra else None
    out = pd.concat([table, stds] + ([firsts] if firsts is not None else []), axis=1)
    out["seeds"] = grouped.size()
    return out.reset_index()


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
