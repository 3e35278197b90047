"""Every model beside its baselines, on the same tracks, splits and seeds: mean ± std tables.

A model conditioned on the group label is scored against that same label only with
``conditioned_on_label = True`` in its row, so no table presents it as a fair comparison.
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
from musiclust.analysis.clustering import Standardizer, cluster
from musiclust.store.table import TrackTable
from musiclust.errors import DataError, ParameterError
from musiclust.analysis.metrics import score_partition, summarize
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


def model_row(bundle: ModelBundle) -> dict:
    """One report row: a trained model's scores, as the pipeline measured them while fitting it."""
    meta = bundle.meta
    row = {"model": bundle.name, "seed": meta["seed"], **meta["metrics"], "reconstruction_mse_db": meta["reconstruction_mse_db"],
           "conditioned_on_label": bundle.conditioned_on_label, "seconds": meta["seconds_total"]}
    if meta.get("note"):
        row["note"] = meta["note"]
    return row


def lyrics_k(groups: list, k: int) -> int:
    """The k of the lyrics-only baseline: the number of groups among the tracks that have lyrics, when
    every one of them has a group (clustering 3 groups' lyrics into the collection's 7 clusters would
    score the baseline against a task it cannot do); otherwise the collection's ``k``."""
    known = [g for g in groups if g]
    return max(2, len(set(known))) if groups and len(known) == len(groups) else k


def baseline_scores(name: str, prep: Prepared) -> dict:
    """Scores of one baseline for the preparation's seed (NaN row when it does not apply)."""
    table, s = prep.table, prep.settings
    if name == "random":
        space = Standardizer.fit(mfcc_embedding(table))(mfcc_embedding(table))
        labels = random_labels(len(table), prep.k, s.seed)
        return score_partition(space, labels, table.groups, method="random", seed=s.seed)
    extra = {}
    if name == "pca_kmeans":  # also the reconstruction reference for the VAEs: same segments, same scoring
        pca = prep.segment_pca()
        raw = pca_embedding(table, prep.normalizer, prep.train_rows, s.latent_dim, s.seed, segments=prep.segments, pca=pca)
        extra["reconstruction_mse_db"] = pca_reconstruction_mse_db(pca, table, prep.normalizer, prep.val_rows, prep.segments)
    elif name == "mfcc_kmeans":
        raw = mfcc_embedding(table)
    elif name == "mfcc_lyrics_kmeans":  # the fused baseline: clustered as the fused model is (centred, not z-scored)
        fused = mfcc_lyrics_embedding(table, prep.lyrics, prep.has_lyrics, s.fusion_weight, s.fusion_missing_lyrics,
                                      s.fusion_rank, s.seed)
        if fused is None:
            return {"note": "too few tracks with lyrics for the lyrics join: the same as mfcc_kmeans"}
        space = fused - fused.mean(axis=0)
        labels, _ = cluster(space, prep.k, s.cluster_method, s.seed)
        return score_partition(space, labels, table.groups, method=s.cluster_method, seed=s.seed)
    elif name == "musicnn_kmeans":  # its own space (unit length), not z-scored: see baselines.musicnn_space
        space = musicnn_space(attach_pretrained(prep))
        labels, _ = cluster(space, prep.k, s.cluster_method, s.seed)
        return score_partition(space, labels, table.groups, method=s.cluster_method, seed=s.seed)
    elif name == "tfidf_kmeans":
        rows = np.flatnonzero(prep.has_lyrics)
        groups = [table.groups[i] for i in rows]
        k = lyrics_k(groups, prep.k)
        if len(rows) <= k:
            return {"n_tracks": int(len(rows))}
        space = prep.lyrics[rows].toarray()  # L2-normalised TF-IDF: Euclidean k-means is spherical k-means here
        labels, _ = cluster(space, k, "kmeans", s.seed)
        return {**score_partition(space, labels, groups, method="kmeans", seed=s.seed), "n_tracks": int(len(rows)), "k": k}
    else:
        raise ParameterError(f"unknown baseline {name!r}")
    space = Standardizer.fit(raw)(raw)
    labels, _ = cluster(space, prep.k, s.cluster_method, s.seed)
    return {**score_partition(space, labels, table.groups, method=s.cluster_method, seed=s.seed), **extra}


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
            rows.append(model_row(bundle))
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
