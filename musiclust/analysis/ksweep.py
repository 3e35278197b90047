"""How many clusters, when nobody says: sweep k and choose it from the data under a stated criterion.

A person's own library has no groups, so k cannot be "the number of groups". :func:`choose_k`
clusters the embedding for every k in a range and scores each partition with one criterion; the
result, :class:`KSweep`, holds the chosen ``k_``, the whole ``curve_`` and the rule that read the
curve, as a JSON-ready record (``to_dict``) for the manifest and the metrics page's plot.

The criteria (each a standard one, with its standard rule):

- ``silhouette``, ``calinski_harabasz``: the k with the highest score;
- ``davies_bouldin``: the k with the lowest score;
- ``gmm_bic``: the k whose diagonal-covariance Gaussian mixture has the lowest BIC (its own fit, not k-means);
- ``gap``: Tibshirani, Walther & Hastie (2001): the smallest k with Gap(k) >= Gap(k+1) - s(k+1), the
  reference data drawn uniformly in the box of the data's principal axes;
- ``stability``: the k whose partition is most reproducible over subsamples (mean ARI, see
  :func:`musiclust.analysis.metrics.stability`).

Which criterion is the default was decided by measurement on labelled sets where the true number of
groups is known (``scripts/experiments/ksweep_criteria.py``, results in ``docs/results/``): see
:data:`DEFAULT_CRITERION`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from musiclust.analysis.clustering import METHODS, cluster
from musiclust.analysis.metrics import internal_scores, stability
from musiclust.errors import ParameterError

CRITERIA = ("silhouette", "calinski_harabasz", "davies_bouldin", "gmm_bic", "gap", "stability")
RULES = {
    "silhouette": "the k with the highest mean silhouette of its partition",
    "calinski_harabasz": "the k with the highest Calinski-Harabasz score of its partition",
    "davies_bouldin": "the k with the lowest Davies-Bouldin score of its partition",
    "gmm_bic": "the k whose diagonal Gaussian mixture has the lowest BIC",
    "gap": "the smallest k with Gap(k) >= Gap(k+1) - s(k+1) (Tibshirani et al. 2001)",
    "stability": "the k whose partition agrees best with itself over 80 % subsamples (mean pairwise ARI)",
}  # ties go to the smaller k; the partitions are the sweep's ``method``'s (k-means by default)
# Chosen on the selection sets of docs/results/ksweep_criteria.json (the default set's 7 groups in the
# MFCC-statistics and PCA spaces, and 8 random subsets of 3-6 of its groups; 200-480 tracks): stability
# found the true k in 3 of 10 with a mean error of 2.0; gap 1 of 10 (3.3); silhouette, Calinski-Harabasz,
# Davies-Bouldin and BIC none (3.5, 3.0, 8.8, 4.7) - silhouette and Calinski-Harabasz chose k = 2 almost
# everywhere. On the real recordings (report sets, not used to choose) no criterion found the number of
# soundtracks: the chosen k is a starting point to show beside its curve, and --k / the sidebar override it.
DEFAULT_CRITERION = "stability"
DEFAULT_K_RANGE = (2, 30)
GAP_REFERENCES = 10  # uniform reference sets per k for the gap statistic
STABILITY_SWEEP_RESAMPLES = 6  # subsamples per k in a stability sweep (15 pairs): 29 k's x 6 fits


@dataclass
class KSweep:
    """A k sweep's record: the criterion and its rule, every k's score, and the chosen ``k_``.

    ``curve_`` maps k to the criterion's score (``spread_`` to its standard error where the criterion
    has one: the gap statistic's s(k)). ``to_dict`` gives plain JSON types for the manifest.
    """

    criterion: str
    k_: int
    curve_: dict[int, float]
    k_range: tuple[int, int]
    method: str = "kmeans"
    seed: int = 0
    n_tracks: int = 0
    spread_: dict[int, float] = field(default_factory=dict)

    @property
    def rule(self) -> str:
        return RULES[self.criterion]

    @property
    def higher_is_better(self) -> bool:
        return self.criterion not in ("davies_bouldin", "gmm_bic")

    def to_dict(self) -> dict:
        """Plain JSON types: ``{"criterion", "rule", "k", "curve": [{"k", "score"[, "spread"]}], ...}``."""
        curve = []
        for k, score in sorted(self.curve_.items()):
            point = {"k": int(k), "score": _json_float(score)}
            if k in self.spread_:
                point["spread"] = _json_float(self.spread_[k])
            curve.append(point)
        return {
            "criterion": self.criterion,
            "rule": self.rule,
            "higher_is_better": self.higher_is_better,
            "k": int(self.k_),
            "k_range": [int(self.k_range[0]), int(self.k_range[1])],
            "method": self.method,
            "seed": int(self.seed),
            "n_tracks": int(self.n_tracks),
            "curve": curve,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "KSweep":
        try:
            curve = {int(p["k"]): _from_json_float(p["score"]) for p in data["curve"]}
            spread = {int(p["k"]): _from_json_float(p["spread"]) for p in data["curve"] if "spread" in p}
            sweep = cls(
                criterion=str(data["criterion"]), k_=int(data["k"]), curve_=curve,
                k_range=(int(data["k_range"][0]), int(data["k_range"][1])), method=str(data.get("method", "kmeans")),
                seed=int(data.get("seed", 0)), n_tracks=int(data.get("n_tracks", 0)), spread_=spread,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ParameterError(f"not a k-sweep record: {exc!r}") from None
        if sweep.criterion not in CRITERIA:
            raise ParameterError(f"unknown k-sweep criterion {sweep.criterion!r} in the record")
        return sweep


def _json_float(value: float) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else float(value)


def _from_json_float(value) -> float:
    return math.nan if value is None else float(value)


def k_candidates(n_tracks: int, k_range: tuple[int, int] = DEFAULT_K_RANGE) -> list[int]:
    """The k's a sweep tries: ``k_range`` (inclusive), capped at ``n_tracks // 2`` so a cluster holds two
    tracks on average (a partition of mostly single tracks is no grouping a person can use)."""
    low, high = int(k_range[0]), int(k_range[1])
    if low < 2 or high < low:
        raise ParameterError(f"k_range must be (low, high) with 2 <= low <= high, got {k_range}")
    top = min(high, n_tracks // 2)
    if top < low:
        raise ParameterError(
            f"choosing k needs at least {2 * low} tracks (two per cluster for k = {low}); the collection has {n_tracks}"
        )
    return list(range(low, top + 1))


def choose_k(
    space: np.ndarray,
    seed: int = 0,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    criterion: str = DEFAULT_CRITERION,
    method: str = "kmeans",
) -> KSweep:
    """Sweep k over ``k_range`` on ``space`` (``(N, D)``, already standardised as for clustering) and
    choose one under ``criterion``. Returns a :class:`KSweep` (``k_``, ``curve_``).

    ``method`` is the clustering whose partitions are scored (not used by ``gmm_bic``, which fits its own
    mixtures, nor by ``gap``, which is defined on k-means' within-cluster dispersion).
    """
    return sweep_all(space, seed, k_range, (criterion,), method)[criterion]


def sweep_all(
    space: np.ndarray,
    seed: int = 0,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    criteria: tuple[str, ...] = CRITERIA,
    method: str = "kmeans",
) -> dict[str, KSweep]:
    """:func:`choose_k` under several criteria at once, each k's partition computed once for all the
    partition scores (silhouette, Calinski-Harabasz, Davies-Bouldin). Returns criterion -> :class:`KSweep`."""
    space = _check_space(space)
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown or not criteria:
        raise ParameterError(f"unknown k criterion {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(CRITERIA)}")
    if method not in METHODS:
        raise ParameterError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    ks = k_candidates(len(space), k_range)
    curves: dict[str, dict[int, float]] = {}
    spreads: dict[str, dict[int, float]] = {}
    partition_scores = [c for c in criteria if c in ("silhouette", "calinski_harabasz", "davies_bouldin")]
    if partition_scores:
        per_k = {k: internal_scores(space, cluster(space, k, method, seed)[0], seed=seed) for k in ks}
        for c in partition_scores:
            curves[c] = {k: per_k[k][c] for k in ks}
    if "gmm_bic" in criteria:
        curves["gmm_bic"] = gmm_bic_curve(space, ks, seed)
    if "gap" in criteria:
        curves["gap"], spreads["gap"] = gap_curve(space, ks, seed)
    if "stability" in criteria:
        curves["stability"] = {k: stability(space, k, method, seed, n_resamples=STABILITY_SWEEP_RESAMPLES) for k in ks}
    return {
        c: KSweep(c, pick_k(c, curves[c], spreads.get(c)), curves[c], (ks[0], ks[-1]), method, seed, len(space), spreads.get(c, {}))
        for c in criteria
    }


def pick_k(criterion: str, curve: dict[int, float], spread: Optional[dict[int, float]] = None) -> int:
    """Read a criterion's curve by its rule (:data:`RULES`). NaN points are never chosen."""
    finite = {k: v for k, v in curve.items() if math.isfinite(v)}
    if not finite:
        raise ParameterError(f"the {criterion} criterion is undefined for every k tried")
    if criterion == "gap":
        ks = sorted(finite)
        for k, following in zip(ks, ks[1:]):
            if finite[k] >= finite[following] - (spread or {}).get(following, 0.0):
                return k
        return ks[-1]  # the gap still rising at the top of the range: the largest k tried
    if criterion in ("davies_bouldin", "gmm_bic"):
        return min(finite, key=lambda k: (finite[k], k))
    return max(finite, key=lambda k: (finite[k], -k))  # ties to the smaller k


def gmm_bic_curve(space: np.ndarray, ks: list[int], seed: int = 0) -> dict[int, float]:
    """BIC of a diagonal-covariance Gaussian mixture per k (lower is better). Diagonal, as the pipeline's
    ``gmm`` clustering: full covariances in 32-80 dimensions need more tracks per component than a
    library of a few hundred tracks has."""
    from sklearn.mixture import GaussianMixture

    return {
        k: float(GaussianMixture(n_components=k, covariance_type="diag", n_init=2, random_state=seed).fit(space).bic(space))
        for k in ks
    }


def gap_curve(space: np.ndarray, ks: list[int], seed: int = 0, references: int = GAP_REFERENCES) -> tuple[dict, dict]:
    """The gap statistic Gap(k) = E*[log W*_k] - log W_k and its standard error s(k) per k.

    W_k is k-means' within-cluster sum of squares; W*_k the same on ``references`` data sets drawn
    uniformly in the bounding box of the data rotated to its principal axes (Tibshirani et al.'s second
    reference, which follows the data's shape). s(k) = sd(log W*_k) * sqrt(1 + 1/B).
    """
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    centred = space - space.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)  # (D', D): rows are the principal axes
    rotated = centred @ axes.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    draws = [rng.uniform(low, high, size=rotated.shape) @ axes for _ in range(references)]  # back in the data's frame
    gap, spread = {}, {}
    for k in ks:
        observed = math.log(max(KMeans(n_clusters=k, n_init=3, random_state=seed).fit(space).inertia_, 1e-12))
        logs = np.array([math.log(max(KMeans(n_clusters=k, n_init=1, random_state=seed + b).fit(ref).inertia_, 1e-12))
                         for b, ref in enumerate(draws)])
        gap[k] = float(logs.mean() - observed)
        spread[k] = float(logs.std() * math.sqrt(1 + 1 / references))
    return gap, spread


def _check_space(space: np.ndarray) -> np.ndarray:
    space = np.asarray(space, dtype=np.float64)
    if space.ndim != 2 or space.shape[1] == 0:
        raise ParameterError(f"choosing k needs an (N, D) embedding, got shape {space.shape}")
    if not np.isfinite(space).all():
        raise ParameterError("choosing k needs a finite embedding (it holds NaN or Inf)")
    return space
