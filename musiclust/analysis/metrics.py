"""Clustering scores with scikit-learn, and tables of mean ± std over seeds.

Two kinds of score. **Label-free** scores need nothing but the embedding: the internal scores
(silhouette, Calinski-Harabasz, Davies-Bouldin, computed in the space the clusters were found in) and
the stability of the clustering under resampling. **Label** scores (ARI, NMI, purity) compare the
clusters with known groups, and exist only when some tracks have a group: a person's own library has
none. :func:`score_partition` says which kinds a row holds in its ``score_kinds`` entry.
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
STABILITY = "stability"
LABEL_FREE = INTERNAL + (STABILITY,)
EXTERNAL = ("ari", "nmi", "purity")
METRICS = LABEL_FREE + EXTERNAL
HELDOUT = tuple(f"heldout_{m}" for m in EXTERNAL)  # the label scores of held-out pieces (evaluation.heldout_scores)
RECONSTRUCTION = "reconstruction_mse_db"  # a VAE's, or PCA's, error on the held-out tracks
AVERAGED = METRICS + (RECONSTRUCTION,) + HELDOUT  # every score a table gives as mean ± std over seeds
HIGHER_IS_BETTER = {
    "silhouette": True, "calinski_harabasz": True, "davies_bouldin": False, "stability": True,
    "ari": True, "nmi": True, "purity": True,
}
# The values of a row's ``score_kinds``: which kinds of score it holds (label scores only where groups exist).
KIND_LABEL_FREE = "label_free"
KIND_LABELS = "labels"

STABILITY_RESAMPLES = 10  # subsamples clustered: 45 pairs compared
STABILITY_FRACTION = 0.8  # of the tracks in each subsample (Ben-Hur, Elisseeff & Guyon 2002 use 0.7-0.9)
STABILITY_MAX_TRACKS = 10_000  # above this, stability is measured on a seeded sample of this many tracks


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


def stability(
    space: np.ndarray,
    k: int,
    method: str = "kmeans",
    seed: int = 0,
    n_resamples: int = STABILITY_RESAMPLES,
    fraction: float = STABILITY_FRACTION,
    max_tracks: int = STABILITY_MAX_TRACKS,
) -> float:
    """How reproducible ``method``'s k-cluster partition of ``space`` is: mean ARI between clusterings of
    random subsamples, compared on the tracks each pair shares.

    Precisely: let R be all N tracks (or, above ``max_tracks``, a uniform sample of that many, drawn with
    ``seed``). For b = 0 .. B-1 (B = ``n_resamples``) draw S_b, ``round(fraction * |R|)`` tracks of R
    uniformly without replacement, and cluster ``space[S_b]`` into k clusters with ``method`` and seed
    ``seed + b``. For every pair b < c compute the adjusted Rand index of the two labellings over
    S_b ∩ S_c (~64 % of R at fraction 0.8). Stability is the mean of the B(B-1)/2 ARIs.

    1.0 means every subsample finds the same partition; ~0 means partitions no more alike than chance
    (ARI is corrected for chance, so a small k is not favoured merely for agreeing by luck, as it is under
    the raw Rand index). Subsamples rather than bootstrap draws with replacement: duplicated tracks would
    form spurious tight clusters. Seeds vary too, so a clustering that depends on its initialisation is
    unstable as it should be. ``method="random"`` scores uniformly random labels (the random baseline's
    "clustering"): ~0 by construction.
    """
    from sklearn.metrics import adjusted_rand_score

    from musiclust.analysis.clustering import cluster

    space = np.asarray(space)
    if space.ndim != 2:
        raise ParameterError(f"stability needs an (N, D) embedding, got shape {space.shape}")
    if n_resamples < 2:
        raise ParameterError(f"stability needs at least 2 resamples to compare, got {n_resamples}")
    if not 0 < fraction < 1:
        raise ParameterError(f"the subsample fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    reference = np.arange(len(space)) if len(space) <= max_tracks else np.sort(rng.choice(len(space), max_tracks, replace=False))
    size = int(round(fraction * len(reference)))
    if not 2 <= k < size:
        raise ParameterError(
            f"stability of k = {k} clusters needs more than k tracks in each {fraction:.0%} subsample; "
            f"{len(space)} tracks give {size}"
        )
    labellings = []  # (tracks, labels), one per subsample; labels indexed by track id, -1 = not drawn
    for b in range(n_resamples):
        rows = np.sort(rng.choice(reference, size, replace=False))
        if method == "random":
            labels = np.random.default_rng(seed + b).integers(0, k, size=size)
        else:
            labels, _ = cluster(space[rows], k, method, seed + b)
        full = np.full(len(space), -1, np.int64)
        full[rows] = labels
        labellings.append(full)
    aris = []
    for b in range(n_resamples):
        for c in range(b + 1, n_resamples):
            shared = (labellings[b] >= 0) & (labellings[c] >= 0)
            aris.append(adjusted_rand_score(labellings[b][shared], labellings[c][shared]))
    return float(np.mean(aris))


def score_partition(
    space: np.ndarray,
    labels_pred: Sequence,
    labels_true: Optional[Sequence] = None,
    method: str = "kmeans",
    seed: int = 0,
    with_stability: bool = True,
) -> dict:
    """Every score a partition has: the label-free ones always, the label ones where groups are known.

    Returns the internal scores, ``stability`` (of ``method`` at this partition's k, see :func:`stability`;
    NaN with ``with_stability=False`` or when undefined), the external scores over the tracks whose group
    is known (``None`` = unknown; NaN when no track has one, so tables keep their columns), and
    ``score_kinds``: ``"label_free"`` or ``"label_free+labels"``, which kinds hold numbers. Pass the
    ``method`` and ``seed`` the partition was made with; ``"random"`` for random labels.
    """
    labels_pred = np.asarray(labels_pred)
    scores: dict = internal_scores(space, labels_pred, seed=seed)
    k = len(np.unique(labels_pred))
    scores[STABILITY] = math.nan
    if with_stability and 2 <= k < round(STABILITY_FRACTION * min(len(labels_pred), STABILITY_MAX_TRACKS)):
        scores[STABILITY] = stability(space, k, method, seed)
    kinds = [KIND_LABEL_FREE]
    if labels_true is not None:
        known = np.array([g is not None for g in labels_true], dtype=bool)
        if known.any():
            truth = np.asarray(labels_true, dtype=object)[known].astype(str)
            scores.update(external_scores(truth, labels_pred[known]))
            kinds.append(KIND_LABELS)
    for name in EXTERNAL:
        scores.setdefault(name, math.nan)
    scores["score_kinds"] = "+".join(kinds)
    return scores


def score_kinds(row: dict) -> tuple[str, ...]:
    """The kinds of score a row of :func:`score_partition` (or a report) holds: ``("label_free",)`` or
    ``("label_free", "labels")``. Rows written before the marker existed are read from their numbers."""
    marker = row.get("score_kinds")
    if isinstance(marker, str) and marker:
        return tuple(marker.split("+"))
    has_labels = any(isinstance(row.get(m), (int, float)) and not math.isnan(row[m]) for m in EXTERNAL)
    return (KIND_LABEL_FREE, KIND_LABELS) if has_labels else (KIND_LABEL_FREE,)


def summarize(rows: Iterable[dict], by: str = "model") -> pd.DataFrame:
    """Mean and ``*_std`` of every score (:data:`AVERAGED`) per ``by`` value, from one row per (model, seed)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise ParameterError("no scores to summarize")
    present = [m for m in AVERAGED if m in frame]
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
