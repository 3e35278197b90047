"""What the app and the CLI call: trained models loaded once, and the questions people ask of them.

Upload a track -> its cluster, map position and neighbours; a collection track's spectrogram, its
reconstruction by each model and how it sounds; a morph between two tracks; cluster cards; the metric
tables; the model catalogue. The app's pages call this door only: answers are plain dataclasses and data
frames (:mod:`musiclust.serving.answers`), never a network. Every method raises a
:class:`~musiclust.errors.MusiclustError` with a clear message on bad input. Nothing here imports
Streamlit; nothing here writes to the checkpoints (training does, through :mod:`musiclust.serving.checkpoint`).

Importing this module imports neither torch nor librosa (nor scikit-learn): the app's first page reads the
catalogue and the trained models' names before any model is needed. They are imported where a model is
loaded (:meth:`Service.bundle`) or audio is analysed.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from musiclust.serving import answers
from musiclust.serving import checkpoint as ckpt
from musiclust.features.audio import AudioSource, load_audio
from musiclust.serving.answers import (  # noqa: F401  (re-exported: the answers of this door)
    UNKNOWN_GROUP, ClusterCard, DecoderLabel, MetricsTable, ModelEntry, ModelInfo, Morph, Reconstruction,
    ReconstructionReport, model_catalogue,
)
from musiclust.serving.previews import PREVIEW_MIME, ready_preview  # noqa: F401  (re-exported: the players' previews)
from musiclust.config import FeatureConfig
from musiclust.paths import CHECKPOINTS, PRETRAINED_CACHE
from musiclust.errors import AudioError, MusiclustError, ParameterError  # noqa: F401  (MusiclustError: what callers catch)

if TYPE_CHECKING:  # imported where a model is loaded or audio analysed: torch and librosa come with them
    import pandas as pd

    from musiclust.features.mel import TrackFeatures
    from musiclust.serving.bundle import ModelBundle, Neighbour, Placement

MAX_LYRICS_CHARS = 20_000
MAX_UPLOAD_BYTES = 50 * 2**20  # the app's upload limit (server.maxUploadSize = 50)
GRIFFIN_LIM_ITERATIONS = 32


def dataset_slug(spec: str) -> str:
    """The checkpoint folder of a data set: ``default``, ``default-piano``, or ``<kind>-<name>-<hash>``
    for a user's folder or CSV, so models of different collections never overwrite each other."""
    if spec in ("default", "default:natural"):
        return "default"
    if spec.startswith("default:"):
        return "default-" + re.sub(r"[^a-z0-9_-]", "", spec.split(":", 1)[1].lower())
    path = Path(spec).expanduser().resolve()
    kind = "csv" if path.suffix.lower() == ".csv" else "folder"
    stem = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-")[:24] or "music"
    return f"{kind}-{stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


@dataclass
class UploadAnswer:
    """A new track analysed by one model."""

    features: TrackFeatures
    placement: Placement
    model: str


def clean_user_lyrics(text: Optional[str]) -> Optional[str]:
    """Pasted lyrics as plain text: control characters dropped, length bounded; ``None`` if empty."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ParameterError("lyrics must be text")
    text = "".join(ch for ch in text[:MAX_LYRICS_CHARS] if ch.isprintable() or ch in "\n\t")
    return text.strip() or None


class Service:
    """Trained models of one data set, loaded once per checkpoint version (thread-safe)."""

    def __init__(self, dataset: str = "default", root: Path = CHECKPOINTS, pretrained_cache: Path = PRETRAINED_CACHE):
        self.dataset = dataset
        self.root = Path(root) / dataset_slug(dataset)
        self.pretrained_cache = Path(pretrained_cache)  # collection tracks' MusiCNN vectors (PretrainedStore), as training caches them
        self._lock = threading.Lock()
        self._warming: set[tuple[str, str]] = set()  # (name, version) that warm_soon was asked for
        self._bundles: dict[tuple[str, str], ModelBundle] = {}

    def models(self) -> list[str]:
        """Names of the trained models present for this data set."""
        return ckpt.available(self.root)

    def version(self, name: str) -> str:
        """The current version folder of ``name``: changes when a retrain switches a new model in."""
        found = ckpt.candidates(self.root, name)
        return found[0].name if found else ""

    def bundle(self, name: str) -> ModelBundle:
        """The model ``name``, loaded once per version; a damaged current version falls back to the previous one."""
        key = (name, self.version(name))
        with self._lock:
            if key not in self._bundles:
                self._bundles = {k: v for k, v in self._bundles.items() if k[0] != name}
                self._bundles[key] = self._load_bundle(name)
            return self._bundles[key]

    def is_loaded(self, name: str) -> bool:
        """Whether the current version of ``name`` is loaded (asking loads nothing)."""
        with self._lock:
            return (name, self.version(name)) in self._bundles

    def _load_bundle(self, name: str) -> ModelBundle:
        """The newest version of ``name`` that loads *and* builds its model; ``meta['fallback_reason']`` says
        why a newer one was skipped. A checkpoint whose files are whole but whose weights do not fit its
        architecture is skipped too, not only one whose files are damaged."""
        import torch

        from musiclust.serving.bundle import ModelBundle

        # Serving encodes one track at a time (~10 segments of 128 x 128, ~2 ms on one core): torch's
        # intra-op threads cannot speed that up, and their waiting made an upload answer 3-7x slower from
        # the main thread of a busy 2-core machine (benchmark, upload figure). Training sets its own count.
        torch.set_num_threads(1)
        return ckpt.load(self.root, name, build=ModelBundle.from_checkpoint)

    def analyse(self, name: str, audio: AudioSource, lyrics: Optional[str] = None, n_neighbours: int = 5) -> UploadAnswer:
        """Decode, validate and featurize ``audio`` (an upload's bytes or a path), then place it.

        Bytes larger than ``MAX_UPLOAD_BYTES`` are refused before decoding (the app's upload limit,
        enforced here too so no caller can bypass it)."""
        if isinstance(audio, (bytes, bytearray, memoryview)) and len(audio) > MAX_UPLOAD_BYTES:
            raise AudioError(
                f"the file is {len(audio) / 2**20:.1f} MB; the upload limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MB"
            )
        from musiclust.features.mel import audio_features

        bundle = self.bundle(name)
        y = load_audio(audio, bundle.feature_config)  # decoded once: the mel and, for a model that reads them,
        features = audio_features(y, bundle.feature_config)  # the MusiCNN vectors come from the same samples
        placement = bundle.place(features.mel_db, clean_user_lyrics(lyrics), n_neighbours, bundle.audio_vectors(y))
        return UploadAnswer(features, placement, name)

    def warm(self, name: str) -> None:
        """Load model ``name`` and answer a short synthetic sound with it, so that a person's first upload
        does not pay for the model load, the imports and the first-call set-up (3–5 s on a 2-core machine,
        benchmark figure 10). The app calls it in the background while its upload page waits for
        a file; a model that cannot be loaded or answer is left for the upload to report."""
        import io

        import soundfile as sf

        rate = 44_100  # as people's files are: the dry run resamples, as their uploads will
        t = np.arange(2 * rate) / rate
        tone = (0.1 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
        buffer = io.BytesIO()
        sf.write(buffer, np.stack([tone, tone], axis=1), rate, format="WAV", subtype="PCM_16")
        try:
            self.analyse(name, buffer.getvalue())
        except MusiclustError:
            pass

    def warm_soon(self, name: str, delay_s: float) -> None:
        """:meth:`warm` ``name`` on a background thread after ``delay_s``, once per model version."""
        key = (name, self.version(name))
        with self._lock:
            if key in self._warming or key in self._bundles:
                return
            self._warming.add(key)
        timer = threading.Timer(delay_s, self.warm, args=(name,))
        timer.daemon = True
        timer.start()

    def evaluation(self) -> Optional[dict]:
        """The latest evaluation report (``python -m musiclust evaluate`` or the one written by ``train``)."""
        return ckpt.load_report(self.root, "evaluation")

    def metrics_table(self) -> Optional[MetricsTable]:
        """The evaluation report summarised per model and baseline (``None`` when there is none yet)."""
        return answers.metrics_table(self.evaluation())

    def track_path(self, bundle: ModelBundle, track_id: str) -> Path:
        """The audio file of a collection track (ids come from the checkpoint, never from user input)."""
        return Path(bundle.tracks[bundle.row(track_id)]["path"])

    def track_vectors(self, bundle: ModelBundle, track_id: str) -> Optional[np.ndarray]:
        """A collection track's MusiCNN vectors for a model that reads them (cached; ``None`` for the others)."""
        return bundle.track_vectors(track_id, self.pretrained_cache)

    # --- what the pages ask, by model name ---------------------------------------------------------
    def model(self, name: str) -> ModelInfo:
        """The facts of a trained model (loading it once, as :meth:`bundle`)."""
        return answers.model_info(self.bundle(name), self.version(name))

    def track_table(self, name: str) -> pd.DataFrame:
        """The collection as ``name`` sees it: id, title, artist, group, cluster, map x/y, path."""
        return answers.track_table(self.bundle(name))

    def neighbours(self, name: str, track_id: str, n: int = 5) -> list[Neighbour]:
        """The ``n`` collection tracks nearest a collection track in the model's space."""
        return self.bundle(name).neighbours_of(track_id, n)

    def cluster_card(self, name: str, cluster: int) -> Optional[ClusterCard]:
        """A cluster's size, group mix, top lyric terms and most typical track (``None`` if not recorded)."""
        return answers.cluster_card(self.bundle(name), cluster)

    def collection_mel(self, name: str, track_id: str) -> np.ndarray:
        """The log-mel (dB, ``(n_mels, T)``) of a collection track, as model ``name`` computes features."""
        return self._track_mel(self.bundle(name), track_id)

    def _track_mel(self, bundle: ModelBundle, track_id: str) -> np.ndarray:
        from musiclust.features.mel import compute_features

        return compute_features(self.track_path(bundle, track_id), bundle.feature_config).mel_db

    def decoder_label(self, name: str, track_id: Optional[str] = None, mel_db: Optional[np.ndarray] = None,
                      lyrics: Optional[str] = None) -> Optional[DecoderLabel]:
        """The label a conditioned decoder gets for a collection track or a new track's ``mel_db`` (``None``
        for a model whose decoder sees no label): the track's own group, else its cluster's majority group."""
        _one_source(track_id, mel_db)
        return answers.decoder_label(self.bundle(name), track_id, mel_db, clean_user_lyrics(lyrics))

    def reconstruction_report(self, names: Sequence[str], track_id: Optional[str] = None,
                              mel_db: Optional[np.ndarray] = None, lyrics: Optional[str] = None,
                              audio: Optional[AudioSource] = None) -> ReconstructionReport:
        """A collection track (``track_id``) or a new track (its ``mel_db``, and ``lyrics`` to place it)
        reconstructed by each model of ``names``, with its error
        (:func:`musiclust.analysis.reconstruction.reconstruction_mse_db`). A model that cannot be loaded is left out
        and named in ``skipped`` with the reason. A model that reads MusiCNN vectors gets a collection
        track's from the cache, and a new track's from its ``audio`` (the upload ``mel_db`` was made from):
        without it, that model is left out and named in ``skipped``."""
        _one_source(track_id, mel_db)
        lyrics = clean_user_lyrics(lyrics)
        loaded, skipped = {}, {}
        for name in names:
            try:
                bundle = self.bundle(name)
            except MusiclustError as exc:
                skipped[name] = str(exc)
                continue
            if track_id is None and audio is None and bundle.needs_pretrained:
                skipped[name] = "it reads MusiCNN vectors of the track's audio, and only its spectrogram was given"
            else:
                loaded[name] = bundle
        if not loaded:
            raise ParameterError("no model to reconstruct with: " + "; ".join(f"{n}: {r}" for n, r in skipped.items()))
        if mel_db is None:
            mel_db = self._track_mel(next(iter(loaded.values())), track_id)
        rows, decoded = [], {}
        for name, bundle in loaded.items():
            if track_id is not None:
                vectors = self.track_vectors(bundle, track_id)
            elif bundle.needs_pretrained:  # a new track's, from its audio (decoded once per feature config)
                if bundle.feature_config not in decoded:
                    decoded[bundle.feature_config] = load_audio(audio, bundle.feature_config)
                vectors = bundle.audio_vectors(decoded[bundle.feature_config])
            else:
                vectors = None
            label = answers.decoder_label(bundle, track_id, mel_db if track_id is None else None, lyrics, vectors)
            recon, error = bundle.reconstruction_error(mel_db, label.index if label else None, vectors)
            rows.append(Reconstruction(name, recon, error, label))
        return ReconstructionReport(mel_db, rows, skipped, _pca_reference(loaded.values(), mel_db))

    def morph(self, name: str, track_a: str, track_b: str, steps: int = 8) -> Morph:
        """The straight walk from collection track A's latent to B's, decoded one segment per step; a
        conditioned decoder gets track A's label at every step."""
        bundle = self.bundle(name)
        mel_a, mel_b = self.collection_mel(name, track_a), self.collection_mel(name, track_b)
        label = answers.decoder_label(bundle, track_a)
        walk = morph(bundle, mel_a, mel_b, steps, label.index if label else None,
                     self.track_vectors(bundle, track_a), self.track_vectors(bundle, track_b))
        return Morph(walk, steps, self.model(name).segment_seconds, label)

    def sonify(self, name: str, mel_db: np.ndarray, n_iter: int = GRIFFIN_LIM_ITERATIONS) -> np.ndarray:
        """Audio (float32, at the model's sample rate) rendered from a dB log-mel by Griffin-Lim (:func:`sonify`)."""
        return sonify(mel_db, self.bundle(name).feature_config, n_iter)

    def k_choice(self, name: str) -> Optional[KChoice]:
        """How model ``name``'s k was chosen (given, one per group, or a sweep with its curve), from its
        manifest; ``None`` for a checkpoint that does not record it."""
        return k_choice_of(self.bundle(name).meta.get("k_choice"))


def _pca_reference(bundles, mel_db: np.ndarray) -> Optional[Reconstruction]:
    """The first model's PCA reference reconstructing ``mel_db`` (None when no checkpoint carries one)."""
    for bundle in bundles:
        done = bundle.pca_reconstruction(mel_db)
        if done is not None:
            recon, error = done
            return Reconstruction(f"PCA, {len(bundle.pca.components_)} components", recon, error, None)
    return None


def _one_source(track_id: Optional[str], mel_db: Optional[np.ndarray]) -> None:
    if (track_id is None) == (mel_db is None):
        raise ParameterError("give either a collection track id or a new track's log-mel, not both or neither")


def training_defaults() -> dict:
    """The retrain form's starting values: what ``python -m musiclust train`` uses without options."""
    from musiclust.settings import Settings, TrainConfig

    settings = Settings()
    return {"epochs": int(settings.epochs or TrainConfig().epochs), "latent_dim": settings.latent_dim,
            "beta": float(settings.beta), "seed": settings.seed}


def sonify(mel_db: np.ndarray, config: FeatureConfig = FeatureConfig(), n_iter: int = GRIFFIN_LIM_ITERATIONS) -> np.ndarray:
    """Audio rendered back from a dB log-mel by Griffin-Lim phase recovery, peak-normalised to -1 dBFS.

    Phase is lost in a mel spectrogram, so this is how a reconstruction can be *heard*, not a copy of
    the original's waveform; the original gets the same treatment on the page for a fair comparison.
    """
    import librosa

    power = librosa.db_to_power(mel_db)
    audio = librosa.feature.inverse.mel_to_audio(
        power,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        fmin=config.fmin,
        fmax=config.fmax,
        n_iter=n_iter,
    )
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio / peak * 10 ** (-1 / 20)).astype(np.float32) if peak > 0 else audio.astype(np.float32)


def morph(bundle: ModelBundle, mel_a: np.ndarray, mel_b: np.ndarray, steps: int = 8, label_a: Optional[int] = None,
          pretrained_a: Optional[np.ndarray] = None, pretrained_b: Optional[np.ndarray] = None) -> np.ndarray:
    """A log-mel that walks the straight line between two tracks' latents, one segment per step
    (``pretrained_a``/``_b``: the tracks' MusiCNN vectors, for a model that reads them)."""
    if not 2 <= steps <= 32:
        raise ParameterError(f"steps must be between 2 and 32, got {steps}")
    za, zb = bundle.latent_of(mel_a, pretrained=pretrained_a), bundle.latent_of(mel_b, pretrained=pretrained_b)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    return bundle.decode_latents((1 - t) * za + t * zb, label_a)


# --- how k was chosen, and which kinds of score a table holds ------------------------------------
K_SOURCES = ("given", "groups", "sweep")


@dataclass(frozen=True)
class KChoice:
    """A checkpoint's record of its k: ``source`` is ``given`` (``--k`` or the sidebar), ``groups`` (one
    cluster per known group) or ``sweep`` (found from the data). A sweep's record adds the criterion, the
    rule that read it and the curve, ``((k, score), ...)`` (``score`` NaN where undefined)."""

    k: int
    source: str
    criterion: Optional[str] = None
    rule: str = ""
    higher_is_better: bool = True
    curve: tuple = ()
    space: str = ""  # what the sweep clustered, e.g. "mfcc_statistics"

    @property
    def has_curve(self) -> bool:
        return len(self.curve) >= 2


def k_choice_of(record) -> Optional[KChoice]:
    """A manifest's ``k_choice`` as a :class:`KChoice`; ``None`` when absent or unreadable. The sweep's
    record (:meth:`musiclust.analysis.ksweep.KSweep.to_dict`) is read either merged into ``k_choice`` or
    under its ``sweep`` key."""
    if not isinstance(record, dict) or record.get("source") not in K_SOURCES:
        return None
    sweep = record.get("sweep") if isinstance(record.get("sweep"), dict) else record
    curve = []
    for point in sweep.get("curve") or []:
        try:
            score = point.get("score")
            curve.append((int(point["k"]), float("nan") if score is None else float(score)))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
    try:
        k = int(record["k"])
    except (KeyError, TypeError, ValueError):
        return None
    criterion = sweep.get("criterion") if curve else None
    return KChoice(k, record["source"], criterion if isinstance(criterion, str) else None, str(sweep.get("rule") or ""),
                   bool(sweep.get("higher_is_better", True)), tuple(sorted(curve)), str(record.get("space") or ""))


def score_kinds(table: MetricsTable) -> tuple[list[str], list[str]]:
    """The table's metrics split by kind: (label-free, label). Label-free scores (silhouette,
    Calinski-Harabasz, Davies-Bouldin, stability) need only the embedding; label scores (ARI, NMI, purity)
    are listed only when some row holds one, i.e. when the collection has groups."""
    from musiclust.analysis.metrics import EXTERNAL

    label = [m for m in table.metrics if m in EXTERNAL and table.summary[m].notna().any()]
    return [m for m in table.metrics if m not in EXTERNAL], label
