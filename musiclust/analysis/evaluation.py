"""Every model beside its baselines, on the same tracks, splits and seeds: mean ± std tables.

A model conditioned on the group label is scored against that same label only with
``conditioned_on_label = True`` in its row, so no table presents it as a fair comparison.

Two scoring protocols, side by side in every row. The task is to cluster a whole collection, so the
main scores cluster and score every track, the ones that trained the network included. Beside them,
the ``heldout_*`` scores (:func:`heldout_scores`) ask how the fitted model places music it never saw:
each seed holds ~15 % of the pieces out of training (split by piece), k-means is fitted on the
training pieces alone, and each held-out track goes to its nearest centre.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np
import pandas as pd

from musiclust.analysis.baselines import (
    BASELINES, mfcc_embedding, mfcc_lyrics_embedding, musicnn_space, pca_embedding, pca_reconstruction_mse_db, random_labels,
)
from musiclust.analysis.clustering import Standardizer, assign, cluster
from musiclust.store.table import TrackTable
from musiclust.errors import DataError, ParameterError
from musiclust.analysis.metrics import HELDOUT, external_scores, score_partition, summarize
from musiclust.models import registry
from musiclust.models.registry import MODEL_NAMES, OPT_IN_MODELS
from musiclust.pipeline import Prepared, Settings, prepare, train_model
from musiclust.pretrained.store import attach_pretrained
from musiclust.serving.bundle import ModelBundle

ALL_NAMES = BASELINES + MODEL_NAMES + OPT_IN_MODELS


def conditioned_on_label(name: str) -> bool:
    """True for a model whose decoder sees the group (a baseline never does)."""
    return name in registry.SPECS and registry.SPECS[name].conditioned_on_label


def baseline_row(name: str, prep: Prepared) -> dict:
    """One report row: a baseline's scores on ``prep``, with the seconds it took."""
    started = time.perf_counter()
    scores = baseline_scores(name, prep)
    return {"model": name, "seed": prep.settings.seed, **scores, "conditioned_on_label": False,
            "seconds": time.perf_counter() - started}


def model_row(bundle: ModelBundle, prep: Prepared) -> dict:
    """One report row: a trained model's scores, as the pipeline measured them while fitting it, and
    its held-out scores (the network never saw those pieces; its latent space is used as it is)."""
    meta, s = bundle.meta, prep.settings
    held = heldout_scores(bundle.space, prep.table.groups, prep.train_rows, prep.val_rows, prep.k, s.cluster_method, s.seed)
    row = {"model": bundle.name, "seed": meta["seed"], **meta["metrics"], "reconstruction_mse_db": meta["reconstruction_mse_db"],
           **held, "conditioned_on_label": bundle.conditioned_on_label, "seconds": meta["seconds_total"]}
    if meta.get("note"):
        row["note"] = meta["note"]
    return row


def heldout_scores(space: np.ndarray, groups: list, train_rows: np.ndarray, val_rows: np.ndarray, k: int,
                   method: str, seed: int) -> dict:
    """ARI, NMI and purity of the held-out tracks (``val_rows``), placed by :func:`heldout_labels`.

    ``space`` is ``(N, D)`` for every track, made by what was fitted on the training tracks (a network,
    PCA, a standardiser). Scored over the held-out tracks whose group is known; NaN when fewer than two
    of them are, or when the training tracks cannot make ``k`` clusters. ``n_heldout`` says how many
    were scored. With few held-out tracks NMI's chance level is high (the random row shows it); ARI is
    corrected for chance.
    """
    known = _known(groups, val_rows)
    if len(train_rows) <= k:  # k clusters cannot be made of the training tracks
        return _heldout_result(groups, known)
    return _heldout_result(groups, known, lambda: heldout_labels(space, train_rows, known, k, method, seed))


def heldout_labels(space: np.ndarray, train_rows: np.ndarray, rows: np.ndarray, k: int, method: str, seed: int) -> np.ndarray:
    """Clusters of ``space[rows]`` by a clustering of ``space[train_rows]`` alone: ``method`` makes ``k``
    clusters of the training tracks and each of ``rows`` joins its nearest centre (k-means' own rule; for
    the other methods the nearest of their cluster means). A track's cluster therefore does not depend
    on which other tracks are placed with it."""
    _, centres = cluster(space[train_rows], k, method, seed)
    return assign(space[rows], centres)[0]


def lyrics_k(groups: list, k: int) -> int:
    """The k of the lyrics-only baseline: the number of groups among the tracks that have lyrics, when
    every one of them has a group (clustering 3 groups' lyrics into the collection's 7 clusters would
    score the baseline against a task it cannot do); otherwise the collection's ``k``."""
    known = [g for g in groups if g]
    return max(2, len(set(known))) if groups and len(known) == len(groups) else k


def baseline_scores(name: str, prep: Prepared) -> dict:
    """Scores of one baseline for the preparation's seed (NaN row when it does not apply), with its
    held-out scores: what it fits (PCA, the standardiser, k-means) fitted on the training tracks only."""
    table, s = prep.table, prep.settings
    train, val = prep.train_rows, prep.val_rows
    if name == "random":
        space = Standardizer.fit(mfcc_embedding(table))(mfcc_embedding(table))
        labels = random_labels(len(table), prep.k, s.seed)
        held = _heldout_random(table.groups, val, prep.k, s.seed)
        return {**score_partition(space, labels, table.groups, method="random", seed=s.seed), **held}
    extra = {}
    if name == "pca_kmeans":  # also the reconstruction reference for the VAEs: same segments, same scoring
        pca = prep.segment_pca()
        raw = pca_embedding(table, prep.normalizer, train, s.latent_dim, s.seed, segments=prep.segments, pca=pca)
        extra["reconstruction_mse_db"] = pca_reconstruction_mse_db(pca, table, prep.normalizer, val, prep.segments)
    elif name == "mfcc_kmeans":
        raw = mfcc_embedding(table)
    elif name in ("mfcc_lyrics_kmeans", "musicnn_kmeans"):  # clustered in their own space, not z-scored
        if name == "mfcc_lyrics_kmeans":  # the fused baseline: clustered as the fused model is (centred)
            fused = mfcc_lyrics_embedding(table, prep.lyrics, prep.has_lyrics, s.fusion_weight, s.fusion_missing_lyrics,
                                          s.fusion_rank, s.seed)
            if fused is None:
                return {"note": "too few tracks with lyrics for the lyrics join: the same as mfcc_kmeans"}
            space = fused - fused.mean(axis=0)
        else:  # unit length: see baselines.musicnn_space
            space = musicnn_space(attach_pretrained(prep))
        labels, _ = cluster(space, prep.k, s.cluster_method, s.seed)
        held = heldout_scores(space, table.groups, train, val, prep.k, s.cluster_method, s.seed)
        return {**score_partition(space, labels, table.groups, method=s.cluster_method, seed=s.seed), **held}
    elif name == "tfidf_kmeans":
        rows = np.flatnonzero(prep.has_lyrics)
        groups = [table.groups[i] for i in rows]
        k = lyrics_k(groups, prep.k)
        if len(rows) <= k:
            return {"n_tracks": int(len(rows))}
        space = prep.lyrics[rows].toarray()  # L2-normalised TF-IDF: Euclidean k-means is spherical k-means here
        labels, _ = cluster(space, k, "kmeans", s.seed)
        position = {row: i for i, row in enumerate(rows)}  # the held-out split among the tracks with lyrics
        held = heldout_scores(space, groups, np.array([position[r] for r in train if r in position], dtype=np.int64),
                              np.array([position[r] for r in val if r in position], dtype=np.int64), k, "kmeans", s.seed)
        return {**score_partition(space, labels, groups, method="kmeans", seed=s.seed), **held,
                "n_tracks": int(len(rows)), "k": k}
    else:
        raise ParameterError(f"unknown baseline {name!r}")
    space = Standardizer.fit(raw)(raw)
    labels, _ = cluster(space, prep.k, s.cluster_method, s.seed)
    held_space = Standardizer.fit(raw[train])(raw)  # z-scored by the training tracks' statistics alone
    held = heldout_scores(held_space, table.groups, train, val, prep.k, s.cluster_method, s.seed)
    return {**score_partition(space, labels, table.groups, method=s.cluster_method, seed=s.seed), **extra, **held}


def _heldout_random(groups: list, val_rows: np.ndarray, k: int, seed: int) -> dict:
    """The random baseline's held-out scores: uniformly random clusters for the held-out tracks."""
    known = _known(groups, val_rows)
    return _heldout_result(groups, known, lambda: random_labels(len(known), k, seed))


def _known(groups: list, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` whose group is known: the held-out tracks a label score can use."""
    return np.array([i for i in rows if groups[i] is not None], dtype=np.int64)


def _heldout_result(groups: list, known: np.ndarray, place=None) -> dict:
    """``heldout_*`` scores of the ``known`` held-out tracks as ``place()`` clusters them, and ``n_heldout``;
    NaN scores when fewer than two can be scored or there is nothing to place them with (``place`` None)."""
    if len(known) < 2 or place is None:
        return {**{name: math.nan for name in HELDOUT}, "n_heldout": len(known)}
    scores = external_scores([str(groups[i]) for i in known], place())
    return {**{f"heldout_{name}": value for name, value in scores.items()}, "n_heldout": len(known)}


def evaluate(
    table: TrackTable,
    names: list[str],
    settings: Settings,
    seeds: int = 3,
    progress: Optional[Callable[[str], None]] = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Train and score every name for seeds ``settings.seed .. settings.seed + seeds - 1``.

    Returns the summary (one row per name: mean, ``*_std``, ``conditioned_on_label``) and the raw rows.
    The summary's ``attrs["k"]`` is the k every seed clustered with (a list if the seeds' k differ: a
    k swept from the data can).
    """
    unknown = [n for n in names if n not in ALL_NAMES]
    if unknown:
        raise ParameterError(f"unknown model names {unknown}; choose from {', '.join(ALL_NAMES)}")
    if seeds < 1:
        raise ParameterError("seeds must be at least 1")
    if not any(table.groups):
        raise DataError("evaluation needs tracks with known groups (sub-folders or a 'genre' column)")
    rows, ks = [], []
    for offset in range(seeds):
        seed_settings = Settings(**{**settings.__dict__, "seed": settings.seed + offset})
        prep = prepare(table, seed_settings)
        ks.append(prep.k)
        trained = {}
        for name in names:
            if progress is not None:
                progress(f"seed {seed_settings.seed}: {name}")
            if name in BASELINES:
                rows.append(baseline_row(name, prep))
                continue
            try:
                bundle = train_model(name, prep, reuse=trained.get(registry.spec(name).reuses))
            except DataError as exc:
                rows.append({"model": name, "seed": seed_settings.seed, "note": str(exc)})
                continue
            trained[name] = bundle
            rows.append(model_row(bundle, prep))
    table_out = summarize([r for r in rows if "silhouette" in r or "nmi" in r]) if rows else pd.DataFrame()
    table_out["conditioned_on_label"] = table_out["model"].map(conditioned_on_label)
    table_out.attrs["k"] = ks[0] if len(set(ks)) == 1 else ks
    return table_out, rows


def to_records(summary: pd.DataFrame) -> list[dict]:
    """JSON-ready rows (NaN -> None) in the CLI's contract order."""
    records = []
    for row in summary.to_dict(orient="records"):
        records.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return records
