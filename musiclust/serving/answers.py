"""The plain answers :class:`musiclust.service.Service` hands out: what a page shows of a model, a cluster,
a reconstruction or the metric tables, as dataclasses and data frames, never a network or a bundle.

Each builder here is a pure function of a loaded :class:`~musiclust.serving.bundle.ModelBundle` (or of
an evaluation report), so the service stays a thin door and these can be tested without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

from musiclust.config import FeatureConfig
from musiclust.models.registry import DISPLAY_ORDER, OPT_IN_MODELS, SPECS

if TYPE_CHECKING:  # pandas is imported where a table is built: placing an upload needs none;
    import pandas as pd  # a bundle (torch) is what a builder is given, never imported here

    from musiclust.serving.bundle import ModelBundle, Neighbour

TRACK_COLUMNS = ("id", "title", "artist", "group", "cluster", "x", "y", "path")
UNKNOWN_GROUP = "unknown"


@dataclass(frozen=True)
class ModelEntry:
    """A model of the registry as the app offers it (names in :data:`DISPLAY_ORDER`)."""

    name: str
    blurb: str
    uses_lyrics: bool  # reads lyrics when a track has them
    joins_lyrics: bool  # the hybrid join: a track given without lyrics reads as one without words
    conditioned_on_label: bool
    reuses: Optional[str]  # the model whose trained network this one takes as it is
    opt_in: bool = False  # not trained by default (it reads a pretrained network's vectors): see registry.OPT_IN_MODELS
    uses_beta: bool = False  # the run's β weighs its KL term


def model_catalogue() -> list[ModelEntry]:
    """Every known model, in the order the app offers them (from :mod:`musiclust.models.registry`)."""
    return [
        ModelEntry(n, s.blurb, s.uses_lyrics, s.joins_lyrics, s.conditioned_on_label, s.reuses, n in OPT_IN_MODELS, s.uses_beta)
        for n, s in ((n, SPECS[n]) for n in DISPLAY_ORDER)
    ]


@dataclass(frozen=True)
class ModelInfo:
    """What a page says about one trained model: its facts, its training record, and its features."""

    name: str
    version: str
    blurb: str
    k: int
    uses_lyrics: bool
    conditioned_on_label: bool
    reads_no_lyrics_as_no_words: bool
    feature_config: FeatureConfig
    fallback_reason: Optional[str] = None  # why the newest version could not be loaded (the previous one is in use)
    metrics: dict = field(default_factory=dict)  # this checkpoint's one-seed scores
    history: list = field(default_factory=list)  # one dict per epoch: train_* and val_* losses
    best_epoch: Optional[int] = None  # the epoch whose weights were kept

    @property
    def segment_seconds(self) -> float:
        """Seconds of audio one model input (one decoded segment) covers."""
        config = self.feature_config
        return config.segment_frames * config.hop_length / config.sample_rate


def model_info(bundle: ModelBundle, version: str) -> ModelInfo:
    spec = SPECS.get(bundle.name)
    meta = bundle.meta
    return ModelInfo(
        name=bundle.name,
        version=version,
        blurb=spec.blurb if spec else "",
        k=bundle.k,
        uses_lyrics=bundle.uses_lyrics,
        conditioned_on_label=bundle.conditioned_on_label,
        reads_no_lyrics_as_no_words=bundle.reads_no_lyrics_as_no_words,
        feature_config=bundle.feature_config,
        fallback_reason=meta.get("fallback_reason") or None,
        metrics=dict(meta.get("metrics") or {}),
        history=list(meta.get("history") or []),
        best_epoch=meta.get("best_epoch") or None,
    )


def track_table(bundle: ModelBundle) -> pd.DataFrame:
    """The collection as one row per track: id, title, artist, group (``unknown`` when none), cluster, map x/y, path."""
    import pandas as pd

    frame = pd.DataFrame(bundle.tracks)
    for column in ("artist", "group"):
        if column not in frame:
            frame[column] = None
    frame["group"] = frame["group"].fillna(UNKNOWN_GROUP)
    frame["artist"] = frame["artist"].fillna("")
    frame["cluster"] = np.asarray(bundle.labels, dtype=int)
    frame["x"] = bundle.coords[:, 0]
    frame["y"] = bundle.coords[:, 1]
    return frame[list(TRACK_COLUMNS)]


@dataclass(frozen=True)
class ClusterCard:
    """A cluster in a few facts: size, group mix (largest first), top lyric terms, its most typical track."""

    cluster: int
    size: int
    with_lyrics: int
    groups: dict  # group -> members, largest first; empty when no member has a group (nothing to mix)
    top_terms: list
    typical: Optional[Neighbour]  # the member nearest the centre; ``distance`` is to the centre


def cluster_card(bundle: ModelBundle, cluster: int) -> Optional[ClusterCard]:
    """The card the checkpoint holds for ``cluster`` (written at training), or ``None`` when it has none."""
    cards = bundle.meta.get("clusters") or []
    card = cards[cluster] if 0 <= cluster < len(cards) else None
    if not card:
        return None
    groups = dict(card.get("groups") or {})
    if set(groups) <= {UNKNOWN_GROUP}:  # a library without groups counts every member "unknown": a bar of one
        groups = {}
    typical = None
    if card.get("typical_track") is not None:
        row = bundle.row(card["typical_track"])
        typical = bundle.neighbour(row, float(np.linalg.norm(bundle.space[row] - bundle.centres[cluster])))
    return ClusterCard(
        cluster=int(cluster), size=int(card.get("size", 0)), with_lyrics=int(card.get("with_lyrics", 0)),
        groups=groups, top_terms=list(card.get("top_terms") or []), typical=typical,
    )


@dataclass(frozen=True)
class DecoderLabel:
    """The group label a conditioned decoder is given, and why that one.

    ``source`` is ``"group"`` (the track's own group), ``"cluster"`` (the majority group of the collection
    track's cluster: its own group is unknown) or ``"placed"`` (the majority group of the cluster where
    the model places a new track)."""

    index: int
    name: str
    source: str
    cluster: int


def decoder_label(bundle: ModelBundle, track_id: Optional[str] = None, mel_db: Optional[np.ndarray] = None,
                  lyrics: Optional[str] = None, pretrained: Optional[np.ndarray] = None) -> Optional[DecoderLabel]:
    """The label to decode a collection track (``track_id``) or a new track (``mel_db``, with its MusiCNN
    vectors ``pretrained`` for a model that reads them) with; ``None`` when the model's decoder is not
    conditioned on a label."""
    if not bundle.conditioned_on_label:
        return None
    if track_id is not None:
        row = bundle.row(track_id)
        cluster = int(bundle.labels[row])
        group = bundle.tracks[row].get("group")
        if group in bundle.label_names:
            return DecoderLabel(bundle.label_names.index(group), group, "group", cluster)
        source = "cluster"
    else:
        cluster = bundle.place(mel_db, lyrics, pretrained=pretrained).cluster
        source = "placed"
    label = bundle.default_label(cluster)
    return DecoderLabel(label, bundle.label_names[label], source, cluster)


@dataclass(frozen=True)
class Reconstruction:
    """One model's reconstruction of a track: the log-mel (dB) it decodes, and its error against the original."""

    model: str
    mel_db: np.ndarray  # (n_mels, T')
    mse_db: float  # dB², from musiclust.analysis.reconstruction.reconstruction_mse_db
    label: Optional[DecoderLabel]


@dataclass(frozen=True)
class ReconstructionReport:
    """A track's log-mel beside each model's reconstruction; models that could not be loaded, with the reason."""

    original_db: np.ndarray  # (n_mels, T)
    rows: list[Reconstruction]
    skipped: dict = field(default_factory=dict)  # model -> reason
    # PCA of the same standardised segments with as many components as the latent, fitted beside the
    # first model (its ``model`` names it): what a VAE's reconstruction should beat
    reference: Optional[Reconstruction] = None

    @property
    def all_rows(self) -> list[Reconstruction]:
        """The models' rows, then the PCA reference when there is one."""
        return self.rows + ([self.reference] if self.reference is not None else [])

    @property
    def width(self) -> int:
        """Frames every spectrogram of the report covers (draw and play them cut to this)."""
        return min([self.original_db.shape[1], *(r.mel_db.shape[1] for r in self.all_rows)])


@dataclass(frozen=True)
class Morph:
    """A walk from track A's latent to track B's, decoded one segment per step."""

    mel_db: np.ndarray  # (n_mels, steps * segment frames)
    steps: int
    segment_seconds: float
    label: Optional[DecoderLabel]  # track A's, for a conditioned decoder


@dataclass(frozen=True)
class MetricsTable:
    """The evaluation report summarised: one row per model or baseline, mean and ``*_std`` over seeds.

    ``summary`` holds ``model``, ``kind`` (``baseline``, ``model`` or ``conditioned``: a model whose decoder
    sees the group, scored against that same group), ``conditioned_on_label``, ``seeds``, and the metrics."""

    summary: pd.DataFrame
    metrics: list  # the metrics present, in METRICS order
    seeds: list  # the seeds the report holds
    higher_is_better: dict  # metric -> True when higher is better
    # baselines left out of ``summary`` because they scored nothing here (they need lyrics, and no or too few
    # tracks have them), each with why: a row of dashes tells a person nothing
    not_scored: dict = field(default_factory=dict)
    # the label scores of the pieces held out of training (analysis.evaluation.heldout_scores), where any row has one
    heldout: list = field(default_factory=list)

    @property
    def n_seeds(self) -> int:
        return int(self.summary["seeds"].max()) if len(self.summary) else 0

    @property
    def conditioned(self) -> list[str]:
        return self.summary.loc[self.summary["conditioned_on_label"], "model"].tolist()

    def cell(self, row: int, metric: str) -> str:
        """mean ± std over the seeds; the mean alone for one seed (no spread to show); ``–`` when missing."""
        entry = self.summary.iloc[row]
        mean, std = float(entry[metric]), float(entry[f"{metric}_std"])
        if math.isnan(mean):
            return "–"
        if int(entry["seeds"]) <= 1:
            return f"{mean:.3f}"
        from musiclust.analysis.metrics import format_mean_std

        return format_mean_std(mean, 0.0 if math.isnan(std) else std)


def metrics_table(report: Optional[dict]) -> Optional[MetricsTable]:
    """The summary of an evaluation report (``None`` when there is no report or it holds no rows)."""
    if not report or not report.get("rows"):
        return None
    # Imported here: the analysis modules pull in scikit-learn, which placing an upload does not need.
    from musiclust.analysis.baselines import BASELINES
    from musiclust.analysis.metrics import HELDOUT, HIGHER_IS_BETTER, METRICS, summarize

    summary = summarize(report["rows"])  # raises ParameterError on a report without scores
    if "conditioned_on_label" not in summary:
        summary["conditioned_on_label"] = False
    summary["conditioned_on_label"] = summary["conditioned_on_label"].fillna(False).astype(bool)
    summary["kind"] = [
        "baseline" if m in BASELINES else "conditioned" if c else "model"
        for m, c in zip(summary["model"], summary["conditioned_on_label"])
    ]
    seeds = sorted({int(r["seed"]) for r in report["rows"] if "seed" in r})
    metrics = [m for m in METRICS if m in summary]
    empty = (summary["kind"] == "baseline") & summary[metrics].isna().all(axis=1)

    def why(row: dict) -> str:
        n = row.get("n_tracks")
        return row.get("note") or (f"only {int(n)} track(s) have lyrics" if n else "no track has lyrics")

    reasons = {r["model"]: why(r) for r in report["rows"]}
    not_scored = {m: reasons.get(m, "no scores") for m in summary.loc[empty, "model"]}
    kept = summary.loc[~empty].reset_index(drop=True)
    heldout = [m for m in HELDOUT if m in kept and kept[m].notna().any()]
    return MetricsTable(kept, metrics, seeds, dict(HIGHER_IS_BETTER), not_scored, heldout)
