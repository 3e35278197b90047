"""Training orchestration: featurized tracks -> trained model -> embeddings -> clusters -> map -> bundle.

:func:`prepare` lines up everything the models share for one seed (split by piece, mel
normalisation, segments, TF-IDF, labels); :func:`train_model` trains one named model on it and
returns a :class:`~musiclust.serving.bundle.ModelBundle` ready to save or serve. The CLI, the benchmark
and the app's retrain all go through here.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy import sparse
import torch
from musiclust.store import streaming
from musiclust.serving.bundle import ModelBundle
from musiclust.analysis.clustering import Standardizer, cluster, kmeans_kind, map_kind, umap_map
from musiclust.store.table import MelNormalizer, TrackTable, split_by_piece, track_segments
from musiclust.errors import DataError, ParameterError
from musiclust.features.tfidf import LyricsTfidf
from musiclust.analysis.metrics import score_partition
from musiclust.models import build_model
from musiclust.models.hybrid import HybridFusion, check_missing_lyrics
from musiclust.models.registry import SPECS
from musiclust.models.training import SegmentData, TrainConfig, fit
from musiclust.pretrained.store import attach_pretrained

# Row name -> network architecture. conv_vae_fusion reuses the trained ConvVAE and joins lyrics after.
ARCHITECTURE = {
    "basic_vae": "basic_vae",
    "conv_vae": "conv_vae",
    "conv_vae_fusion": "conv_vae",
    "mvae_poe": "mvae_poe",
    "beta_cvae": "beta_cvae",
    "musicnn_vae": "musicnn_vae",
}
# Trained by default (`train --models all`, the app's retrain). A model that reads pretrained vectors is
# opt-in: its first run extracts MusiCNN for every track (~1.6 CPU-s a 30 s clip, cached), and the
# default retrain is held to 120 s. Evaluation scores both.
MODEL_NAMES = tuple(n for n in ARCHITECTURE if not SPECS[n].needs_pretrained)
OPT_IN_MODELS = tuple(n for n in ARCHITECTURE if SPECS[n].needs_pretrained)
USES_LYRICS = {"conv_vae_fusion", "mvae_poe"}

EpochFn = Callable[[int, int, dict, float], None]


@dataclass
class Settings:
    """Choices of a training run that are not network architecture (those live in each model's config)."""

    latent_dim: int = 32
    beta: float = 4.0  # β of the conditioned β-VAE (the other models use β = 1)
    k: Optional[int] = None  # clusters; None = number of groups
    seed: int = 0
    epochs: Optional[int] = None  # None = the fit loop's tuned default (TrainConfig.epochs)
    batch_size: int = 64
    cluster_method: str = "kmeans"
    val_fraction: float = 0.15
    fusion_rank: int = 16  # lyrics dimensions in hybrid fusion
    fusion_weight: float = 1.0  # of the lyrics block against the audio block (both unit total variance)
    fusion_missing_lyrics: str = "apart"  # a track without lyrics: "apart" (no words) or "centre" (unknown)
    tfidf_max_features: int = 1000

    def __post_init__(self) -> None:
        if self.latent_dim < 2 or (self.epochs is not None and self.epochs < 1) or self.batch_size < 2:
            raise ParameterError("latent_dim >= 2, epochs >= 1 and batch_size >= 2 are required")
        if self.k is not None and self.k < 2:
            raise ParameterError(f"k must be at least 2, got {self.k}")
        if self.beta < 0:
            raise ParameterError(f"beta must be >= 0, got {self.beta}")
        check_missing_lyrics(self.fusion_missing_lyrics, "fusion_missing_lyrics")


@dataclass
class Prepared:
    """Everything the models of one seed share, row-aligned with ``table.tracks``."""

    table: TrackTable
    settings: Settings
    train_rows: np.ndarray
    val_rows: np.ndarray
    normalizer: MelNormalizer
    segments: list  # per track (S_i, n_mels, frames) standardised
    tfidf: LyricsTfidf
    lyrics: sparse.csr_matrix  # (N, V) TF-IDF, sparse: dense it would be 4 KB a track
    has_lyrics: np.ndarray  # (N,) bool
    label_idx: np.ndarray  # (N,) int64, -1 unknown
    k: int
    pretrained: Optional[list] = None  # per track (S_i, 250) MusiCNN vectors: musiclust.pretrained.store.attach_pretrained

    def data(self, rows: np.ndarray, with_labels: bool = False) -> SegmentData:
        labels = self.label_idx[rows] if with_labels else None
        return SegmentData(
            mel_segments=[self.segments[i] for i in rows],
            lyrics=self.lyrics[rows] if self.lyrics.shape[1] else None,
            has_lyrics=self.has_lyrics[rows],
            labels=labels,
            pretrained=None if self.pretrained is None else [self.pretrained[i] for i in rows],
        )


def prepare(table: TrackTable, settings: Settings) -> Prepared:
    train_rows, val_rows = split_by_piece(table.tracks, settings.val_fraction, settings.seed)
    frames = table.config.segment_frames
    if streaming.is_lazy(table):  # mels in a sharded store: one normalising pass, segments read on access
        normalizer, segs = streaming.prepare_segments(table, train_rows)
    else:
        normalizer = MelNormalizer.fit([table.mels[i] for i in train_rows])
        segs = [track_segments(m, normalizer, frames) for m in table.mels]
    tfidf = LyricsTfidf(max_features=settings.tfidf_max_features).fit(table.lyrics)
    lyrics, has_lyrics = tfidf.transform_sparse(table.lyrics)
    n_groups = len(table.label_names())
    k = settings.k or n_groups
    if not k or k < 2:
        raise DataError("the collection has fewer than 2 known groups: pass k (the number of clusters) explicitly")
    if k > len(table):
        raise ParameterError(f"k = {k} exceeds the number of tracks ({len(table)})")
    return Prepared(table, settings, train_rows, val_rows, normalizer, segs, tfidf, lyrics, has_lyrics, table.label_indices(), k)


def model_config(name: str, prep: Prepared) -> dict:
    cfg = prep.table.config
    config = {"latent_dim": prep.settings.latent_dim, "n_mels": cfg.n_mels, "frames": cfg.segment_frames}
    arch = ARCHITECTURE[name]
    if arch == "mvae_poe":
        if prep.lyrics.shape[1] == 0:
            raise DataError("mvae_poe needs lyrics, and no track of this collection has usable lyrics")
        config["lyrics_dim"] = int(prep.lyrics.shape[1])
    if arch == "beta_cvae":
        n_labels = len(prep.table.label_names())
        if n_labels < 2 or (prep.label_idx < 0).any():
            raise DataError("beta_cvae is conditioned on the group, so every track needs a group (sub-folder or 'genre')")
        config.update(n_labels=n_labels, beta=prep.settings.beta)
    return config


def train_model(
    name: str,
    prep: Prepared,
    progress: Optional[EpochFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    reuse: Optional[ModelBundle] = None,
) -> ModelBundle:
    """Train model ``name`` on ``prep`` and return its fitted bundle.

    ``conv_vae_fusion`` takes the trained ConvVAE bundle as ``reuse`` when given (same seed and
    data, so training it again would give the same weights) and only fits the lyrics join.
    """
    if name not in ARCHITECTURE:
        raise ParameterError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    s = prep.settings
    started = time.perf_counter()
    arch = ARCHITECTURE[name]
    if reuse is not None and reuse.architecture == arch and name == "conv_vae_fusion":
        model, history = reuse.model, reuse.meta.get("history", [])
        fit_meta = {k: reuse.meta.get(k) for k in ("best_epoch", "stopped_early", "train_seconds")}
    else:
        if SPECS[name].needs_pretrained:
            attach_pretrained(prep)
        model = build_model(arch, model_config(name, prep), seed=s.seed)
        conditioned = arch == "beta_cvae"
        train_cfg = TrainConfig(batch_size=s.batch_size, seed=s.seed, **({} if s.epochs is None else {"epochs": s.epochs}))
        result = fit(
            model,
            prep.data(prep.train_rows, conditioned),
            prep.data(prep.val_rows, conditioned),
            train_cfg,
            progress=progress,
            should_stop=should_stop,
        )
        history = result.history
        fit_meta = {"best_epoch": result.best_epoch, "stopped_early": result.stopped_early, "train_seconds": result.seconds}
    with _one_torch_thread():
        fusion = _fit_fusion(prep, model, reuse) if name == "conv_vae_fusion" else None
        bundle = _finish(name, model, prep, fusion)
    bundle.meta.update(fit_meta, history=history, seconds_total=time.perf_counter() - started)
    return bundle


@contextmanager
def _one_torch_thread():
    """Embedding the collection after training runs one track (~10 segments) per network call: a second
    torch thread only adds waiting. On a busy 2-core machine that waiting made it take 29-35 s instead of
    ~1.5 s per model (benchmark, training figure); on a quiet one both take ~1.5 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit_fusion(prep: Prepared, audio_model, reuse: Optional[ModelBundle]) -> HybridFusion:
    """Fit the hybrid join on the collection's ConvVAE embeddings and lyrics TF-IDF."""
    if int(prep.has_lyrics.sum()) < 3:
        raise DataError("conv_vae_fusion needs lyrics on at least 3 tracks")
    if reuse is not None:  # the trained ConvVAE's collection embeddings, un-centred: no second encoding pass
        audio = reuse.space * reuse.scaler.scale + reuse.scaler.mean
    else:
        audio = _bundle_for(audio_model, "conv_vae", prep, None).raw_embedding(prep.table.mels, prep.table.lyrics)
    s = prep.settings
    return HybridFusion.fit(
        audio, prep.lyrics, prep.has_lyrics, weight=s.fusion_weight, n_components=s.fusion_rank, seed=s.seed,
        missing_lyrics=s.fusion_missing_lyrics,
    )


def _bundle_for(model, name: str, prep: Prepared, fusion: Optional[HybridFusion]) -> ModelBundle:
    """A bundle around a trained network, before its clustering and map are fitted."""
    table = prep.table
    tracks = [
        {
            "id": t.id,
            "title": t.title,
            "artist": t.artist,
            "group": t.group,
            "path": str(t.path),
            "has_lyrics": bool(prep.has_lyrics[i]),
        }
        for i, t in enumerate(table.tracks)
    ]
    model.eval()
    bundle = ModelBundle(
        name=name,
        architecture=ARCHITECTURE[name],
        model=model,
        feature_config=table.config,
        normalizer=prep.normalizer,
        tfidf=prep.tfidf,
        scaler=Standardizer(np.zeros(1), np.ones(1)),
        centres=np.zeros((0, 1), np.float32),
        space=np.zeros((0, 1), np.float32),
        labels=np.zeros(0, np.int64),
        coords=np.zeros((0, 2), np.float32),
        tracks=tracks,
        label_names=table.label_names(),
        fusion=fusion,
        meta={"uses_lyrics": name in USES_LYRICS},
    )
    return bundle


def _finish(name: str, model, prep: Prepared, fusion: Optional[HybridFusion]) -> ModelBundle:
    """Embed the collection, cluster it, map it, score it, and describe its clusters."""
    table, s = prep.table, prep.settings
    bundle = _bundle_for(model, name, prep, fusion)
    raw = bundle.raw_embedding(table.mels, table.lyrics, prep.pretrained)  # (N, D)
    # Latents are only centred, not z-scored per dimension: the KL term already puts active dimensions
    # on a unit scale, and z-scoring would blow collapsed (near-constant) dimensions up into noise.
    # Models clustered by direction are not centred either: their means shrink towards the prior's 0,
    # so the direction from 0 is what the shrinkage leaves unchanged, and a direction taken from the
    # collection's mean is unstable for a track that lies near that mean (an upload resampled from
    # 22.05 to 44.1 kHz, 0.003 dB away, could change cluster in a barely trained model).
    direction = bool(model.cluster_on_direction)
    origin = np.zeros(raw.shape[1], np.float32) if direction else raw.mean(axis=0)
    bundle.scaler = Standardizer(origin, np.ones(raw.shape[1], np.float32), direction)
    bundle.space = bundle.scaler(raw)
    bundle.labels, bundle.centres = cluster(bundle.space, prep.k, s.cluster_method, s.seed)
    bundle.coords = umap_map(bundle.space, seed=s.seed)
    scores = score_partition(bundle.space, bundle.labels, table.groups)
    bundle.meta.update(
        metrics=scores,
        k=prep.k,
        settings=asdict(s),
        reconstruction_mse_db=reconstruction_error(bundle, prep),
        clusters=cluster_cards(bundle, prep),
        n_tracks=len(table),
        index={  # which scalable path fitted this bundle (issue #7; thresholds in clustering.py)
            "clustering": kmeans_kind(len(table)) if s.cluster_method == "kmeans" else s.cluster_method,
            "map": map_kind(len(table)),
        },
        n_train=int(len(prep.train_rows)),
        n_val=int(len(prep.val_rows)),
        seed=s.seed,
    )
    return bundle


def reconstruction_error(bundle: ModelBundle, prep: Prepared) -> float:
    """Mean squared error in dB² of the mel reconstruction over the held-out tracks."""
    errors = []
    for i in prep.val_rows:
        mel = prep.table.mels[i]
        label = int(prep.label_idx[i]) if prep.label_idx[i] >= 0 else None
        recon = bundle.reconstruct(mel, label, None if prep.pretrained is None else prep.pretrained[i])
        errors.append(float(np.mean((recon - mel[:, : recon.shape[1]]) ** 2)) if recon.shape[1] <= mel.shape[1] else np.nan)
    return float(np.nanmean(errors)) if errors else float("nan")


def cluster_cards(bundle: ModelBundle, prep: Prepared) -> list[dict]:
    """Per cluster: size, group mix, top lyric terms, and its most typical track (nearest the centre)."""
    cards = []
    for c in range(bundle.k):
        rows = np.flatnonzero(bundle.labels == c)
        groups: dict[str, int] = {}
        for r in rows:
            g = bundle.tracks[r]["group"] or "unknown"
            groups[g] = groups.get(g, 0) + 1
        lyric_rows = rows[prep.has_lyrics[rows]]
        typical = None
        if len(rows):
            d = np.linalg.norm(bundle.space[rows] - bundle.centres[c], axis=1)
            typical = bundle.tracks[rows[int(d.argmin())]]["id"]
        cards.append(
            {
                "cluster": c,
                "size": int(len(rows)),
                "groups": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
                "top_terms": prep.tfidf.top_terms(prep.lyrics[lyric_rows]) if len(lyric_rows) else [],
                "typical_track": typical,
                "with_lyrics": int(len(lyric_rows)),
            }
        )
    return cards


def train_models(
    table: TrackTable,
    names: list[str],
    settings: Settings,
    on_model: Optional[Callable[[int, str], None]] = None,
    progress: Optional[EpochFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> dict[str, ModelBundle]:
    """Train several models on one preparation (all in memory; the caller saves only if all succeed)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    prep = prepare(table, settings)
    bundles: dict[str, ModelBundle] = {}
    order = sorted(names, key=lambda n: n == "conv_vae_fusion")  # fusion after conv_vae so it can reuse it
    for index, name in enumerate(order):
        if on_model is not None:
            on_model(index, name)
        bundles[name] = train_model(name, prep, progress, should_stop, reuse=bundles.get("conv_vae"))
    return bundles
