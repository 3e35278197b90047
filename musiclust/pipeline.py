"""Training orchestration: featurized tracks -> trained model -> embeddings -> clusters -> map -> bundle.

:func:`prepare` lines up everything the models share for one seed (split by piece, mel
normalisation, segments, TF-IDF, labels, k); :func:`train_model` trains one named model on it and
returns a :class:`~musiclust.serving.bundle.ModelBundle` ready to save or serve. Every fact about a
model comes from its :mod:`~musiclust.models.registry` spec. The CLI and the app's retrain go through
:func:`musiclust.publish.train_and_publish`, which calls these; so do evaluation and the benchmark.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy import sparse
from musiclust.store import streaming
from musiclust.serving.bundle import ModelBundle
from musiclust.analysis.clustering import Standardizer, cluster, kmeans_kind, map_kind, umap_map
from musiclust.store.table import MelNormalizer, TrackTable, split_by_piece, track_segments
from musiclust.determinism import reproducible
from musiclust.errors import DataError, ParameterError
from musiclust.features.tfidf import LyricsTfidf
from musiclust.analysis.metrics import score_partition
from musiclust.analysis.baselines import SegmentPCA
from musiclust.analysis.reconstruction import mean_reconstruction_mse_db
from musiclust.models import build_model
from musiclust.models import registry
from musiclust.models.hybrid import HybridFusion
from musiclust.models.registry import MODEL_NAMES, OPT_IN_MODELS, ConfigInputs, ModelSpec
from musiclust.models.training import SegmentData, TrainConfig, fit
from musiclust.pretrained.store import attach_pretrained
from musiclust.settings import Settings

__all__ = ["MODEL_NAMES", "OPT_IN_MODELS", "Prepared", "Settings", "config_inputs", "model_config", "prepare", "train_model", "train_models"]

EpochFn = Callable[[int, int, dict, float], None]


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
    k: int = 0  # clusters: set by prepare() (see _choose_k)
    k_choice: dict = field(default_factory=dict)  # how k was chosen: {"k", "source"[, the sweep's record]}
    pretrained: Optional[list] = None  # per track (S_i, 250) MusiCNN vectors: musiclust.pretrained.store.attach_pretrained
    _pca: Optional[SegmentPCA] = field(default=None, repr=False)

    def segment_pca(self) -> SegmentPCA:
        """PCA with as many components as the latent, fitted once on the training tracks' segments: the
        ``pca_kmeans`` baseline, and the reconstruction reference each trained model carries."""
        if self._pca is None:
            self._pca = SegmentPCA(self.settings.latent_dim, self.settings.seed).fit([self.segments[i] for i in self.train_rows])
        return self._pca

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
    prep = Prepared(table, settings, train_rows, val_rows, normalizer, segs, tfidf, lyrics, has_lyrics, table.label_indices())
    n_groups = len(table.label_names())
    # ---- where k is chosen: given, else the number of groups, else found from the data ----
    if settings.k:
        prep.k_choice = {"k": settings.k, "source": "given"}
    elif n_groups >= 2:
        prep.k_choice = {"k": n_groups, "source": "groups"}
    else:
        prep.k_choice = _choose_k(prep)
    prep.k = int(prep.k_choice["k"])
    if prep.k > len(table):
        raise ParameterError(f"k = {prep.k} exceeds the number of tracks ({len(table)})")
    return prep


def _choose_k(prep: Prepared) -> dict:
    """k for a collection without known groups and without a given k: ``{"k", "source": "sweep", "sweep"}``.

    Found before any model trains, so every model of a run shares one k: a sweep over k on the tracks'
    standardised MFCC statistics under :data:`musiclust.analysis.ksweep.DEFAULT_CRITERION` (the criterion
    chosen on labelled sets, ``docs/results/ksweep_criteria*.json``). The sweep goes in each manifest.
    """
    from sklearn.preprocessing import StandardScaler

    from musiclust.analysis.ksweep import choose_k

    space = StandardScaler().fit_transform(np.asarray(prep.table.mfcc_stats, dtype=np.float64))
    with reproducible(prep.settings.seed):
        sweep = choose_k(space, seed=prep.settings.seed, method=prep.settings.cluster_method)
    return {"k": int(sweep.k_), "source": "sweep", "space": "mfcc_statistics", "sweep": sweep.to_dict()}


def config_inputs(prep: Prepared) -> ConfigInputs:
    """What every model's config and trainability are built from, for this preparation."""
    cfg, s = prep.table.config, prep.settings
    n_labels = len(prep.table.label_names()) if len(prep.label_idx) and (prep.label_idx >= 0).all() else 0
    return ConfigInputs(
        latent_dim=s.latent_dim, n_mels=cfg.n_mels, frames=cfg.segment_frames, lyrics_dim=int(prep.lyrics.shape[1]),
        n_labels=n_labels, beta=s.beta, n_with_lyrics=int(prep.has_lyrics.sum()),
    )


def model_config(name: str, prep: Prepared) -> dict:
    """The network config of model ``name`` on ``prep`` (the registry's builder)."""
    return registry.spec(name).build_config(config_inputs(prep))


def train_model(
    name: str,
    prep: Prepared,
    progress: Optional[EpochFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    reuse: Optional[ModelBundle] = None,
) -> ModelBundle:
    """Train model ``name`` on ``prep`` and return its fitted bundle.

    A model whose spec ``reuses`` another takes that model's trained bundle as ``reuse`` when given
    (same seed and data, so training it again would give the same weights) and only fits what follows
    the network. Raises :class:`DataError` when the model cannot train on this collection.
    """
    spec = registry.spec(name)
    inputs = config_inputs(prep)
    reason = spec.skip_reason(inputs)
    if reason is not None:
        raise DataError(reason)
    if reuse is not None and reuse.name != spec.reuses:
        reuse = None
    s = prep.settings
    started = time.perf_counter()
    if reuse is not None:
        model, history = reuse.model, reuse.meta.get("history", [])
        fit_meta = {k: reuse.meta.get(k) for k in ("best_epoch", "stopped_early", "train_seconds")}
    else:
        if spec.needs_pretrained:
            attach_pretrained(prep)
        model = build_model(spec.architecture, spec.build_config(inputs), seed=s.seed)
        if hasattr(model, "fit_linear_code"):  # BasicVAE starts as the training tracks' PCA (models/basic_vae.py)
            pca = prep.segment_pca()
            model.fit_linear_code(pca.mean_, pca.components_, pca.variance_)
        if getattr(model, "code", None) is not None:  # the conv models' band and time codes (models/linear_code.py)
            model.code.fit([prep.segments[i] for i in prep.train_rows], s.seed)
        conditioned = spec.conditioned_on_label
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
    with reproducible(s.seed):  # embedding, clusters, map and scores: the same bits on any core count
        fusion = _fit_fusion(prep, model, spec, reuse) if spec.fits_lyrics_join(inputs) else None
        bundle = _finish(spec, model, prep, fusion)
    bundle.meta.update(fit_meta, history=history, seconds_total=time.perf_counter() - started, note=spec.note(inputs))
    return bundle


def _fit_fusion(prep: Prepared, audio_model, spec: ModelSpec, reuse: Optional[ModelBundle]) -> HybridFusion:
    """Fit the hybrid join on the collection's audio embeddings (of the reused network) and lyrics TF-IDF."""
    if reuse is not None:  # the reused model's collection embeddings, un-centred: no second encoding pass
        audio = reuse.space * reuse.scaler.scale + reuse.scaler.mean
    else:
        audio = _bundle_for(audio_model, spec, prep, None).raw_embedding(prep.table.mels, prep.table.lyrics, prep.pretrained)
    s = prep.settings
    return HybridFusion.fit(
        audio, prep.lyrics, prep.has_lyrics, weight=s.fusion_weight, n_components=s.fusion_rank, seed=s.seed,
        missing_lyrics=s.fusion_missing_lyrics,
    )


def _bundle_for(model, spec: ModelSpec, prep: Prepared, fusion: Optional[HybridFusion]) -> ModelBundle:
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
        name=spec.name,
        architecture=spec.architecture,
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
        pca=prep.segment_pca(),
        # no vocabulary, or a lyrics join left out (too few lyrics): a pasted text cannot change a placement
        meta={"uses_lyrics": spec.uses_lyrics and prep.tfidf.dim > 0 and (fusion is not None or not spec.joins_lyrics)},
    )
    return bundle


def _finish(spec: ModelSpec, model, prep: Prepared, fusion: Optional[HybridFusion]) -> ModelBundle:
    """Embed the collection, cluster it, map it, score it, and describe its clusters."""
    table, s = prep.table, prep.settings
    bundle = _bundle_for(model, spec, prep, fusion)
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
    scores = score_partition(bundle.space, bundle.labels, table.groups, method=s.cluster_method, seed=s.seed)
    bundle.meta.update(
        metrics=scores,
        k=prep.k,
        k_choice=prep.k_choice,
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
    """Mean squared error in dB² of the mel reconstruction over the held-out tracks.

    Scored by :func:`~musiclust.analysis.reconstruction.reconstruction_mse_db`, as PCA's reference is
    (:func:`~musiclust.analysis.baselines.pca_reconstruction_mse_db`), so the two compare directly."""

    def pairs():
        for i in prep.val_rows:
            mel = prep.table.mels[i]
            label = int(prep.label_idx[i]) if prep.label_idx[i] >= 0 else None
            yield mel, bundle.reconstruct(mel, label, None if prep.pretrained is None else prep.pretrained[i])

    return mean_reconstruction_mse_db(pairs())


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
    """Train several models on one preparation, all in memory; any model that cannot train stops the lot.

    (:func:`musiclust.publish.train_and_publish` is the forgiving version that also saves.)
    """
    prep = prepare(table, settings)
    bundles: dict[str, ModelBundle] = {}
    for index, name in enumerate(registry.training_order(names)):
        if on_model is not None:
            on_model(index, name)
        bundles[name] = train_model(name, prep, progress, should_stop, reuse=bundles.get(registry.spec(name).reuses))
    return bundles
