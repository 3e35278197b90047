"""A trained model with everything needed to place a new track: the network, the mel normaliser,
TF-IDF, the clustering, the map, and the collection it was fitted on.

A bundle is what a checkpoint holds (:meth:`ModelBundle.to_checkpoint` / :meth:`from_checkpoint`),
and what :mod:`musiclust.service` serves to the app and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from musiclust.serving import checkpoint as ckpt
from musiclust.analysis.clustering import Standardizer, assign, nearest, place_on_map, squared_norms
from musiclust.config import FeatureConfig
from musiclust.store.table import MelNormalizer, track_segments
from musiclust.analysis.baselines import SegmentPCA
from musiclust.analysis.reconstruction import reconstruction_mse_db
from musiclust.errors import CheckpointError, MusiclustError, ParameterError
from musiclust.features.tfidf import LyricsTfidf
from musiclust.models import build_model, config_class, registry
from musiclust.models.hybrid import HybridFusion
from musiclust.models.base import BaseVAE
from musiclust.paths import PRETRAINED_CACHE

EMBED_BATCH = 64


@dataclass
class Neighbour:
    id: str
    title: str
    artist: str
    group: Optional[str]
    path: str
    distance: float


@dataclass
class Placement:
    """Where a track lands: its cluster, how typical it is there, its map position and neighbours."""

    cluster: int
    distance_to_centre: float
    cluster_median_distance: float  # median distance of the cluster's members to its centre, for scale
    coords: tuple[float, float]
    neighbours: list[Neighbour]
    used_lyrics: bool


@dataclass
class ModelBundle:
    name: str
    architecture: str
    model: BaseVAE
    feature_config: FeatureConfig
    normalizer: MelNormalizer
    tfidf: LyricsTfidf
    scaler: Standardizer
    centres: np.ndarray  # (k, D) in the standardised space
    space: np.ndarray  # (N, D) standardised embeddings of the collection
    labels: np.ndarray  # (N,) cluster of each collection track
    coords: np.ndarray  # (N, 2) UMAP map
    tracks: list[dict]  # id, title, artist, group, path, has_lyrics
    label_names: list[str]
    fusion: Optional[HybridFusion] = None
    pca: Optional[SegmentPCA] = None  # the reconstruction reference: PCA of the same segments, as many components as the latent
    meta: dict = field(default_factory=dict)
    # Serving caches, built on first use from the arrays above and never saved (no index in a checkpoint):
    # squared norms of ``space`` for exact neighbour search, and track id -> row.
    _norms: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)
    _rows: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)

    # --- encoding -------------------------------------------------------------------------
    def _lyrics_rows(self, lyrics: list[Optional[str]]) -> tuple[np.ndarray, np.ndarray]:
        if self.tfidf.dim == 0:
            return np.zeros((len(lyrics), 0), np.float32), np.zeros(len(lyrics), bool)
        return self.tfidf.transform(lyrics)

    def embed_segments(
        self, segs: np.ndarray, lyric_row: np.ndarray, has_lyrics: bool, pretrained: Optional[np.ndarray] = None,
        whole: bool = False,
    ) -> np.ndarray:
        """Mean embedding over one track's standardised segments ``(S, n_mels, frames)`` -> ``(D,)``;
        ``pretrained`` ``(S, D)``: the segments' pretrained-network vectors, for a model that reads them.
        ``whole``: the mean of the whole posterior mean ``(latent_dim,)``, time code included (what the
        decoder reads), instead of the part tracks are clustered on."""
        mus = []
        for start in range(0, len(segs), EMBED_BATCH):
            chunk = torch.from_numpy(segs[start : start + EMBED_BATCH]).unsqueeze(1)  # (b, 1, n_mels, frames)
            batch = {"mel": chunk}
            if pretrained is not None:
                batch["pretrained"] = torch.from_numpy(np.asarray(pretrained[start : start + EMBED_BATCH], np.float32))
            if lyric_row.size:
                batch["lyrics"] = torch.from_numpy(np.repeat(lyric_row[None], len(chunk), axis=0))
                batch["has_lyrics"] = torch.full((len(chunk),), bool(has_lyrics))
            mus.append((self.model.posterior_mean(batch) if whole else self.model.embed(batch)).numpy())
        return np.concatenate(mus).mean(axis=0)

    def raw_embedding(
        self, mels: list[np.ndarray], lyrics: list[Optional[str]], pretrained: Optional[list] = None
    ) -> np.ndarray:
        """Embeddings ``(N, D)`` of tracks given their dB log-mels and lyrics (before standardising), and
        for a model that reads them, each track's ``(S_i, 250)`` pretrained vectors."""
        rows, mask = self.tfidf.transform_sparse(lyrics)  # (N, V) CSR: a collection's dense TF-IDF is 4 KB a track
        frames = self.feature_config.segment_frames
        with torch.inference_mode():
            audio = np.stack(
                [
                    self.embed_segments(
                        track_segments(m, self.normalizer, frames), rows[i].toarray()[0], mask[i],
                        None if pretrained is None else pretrained[i],
                    )
                    for i, m in enumerate(mels)
                ]
            )
        if self.fusion is not None:
            audio = self.fusion(audio, rows, mask)  # (N, latent + lyrics components)
        return audio.astype(np.float32)

    # --- pretrained vectors, for a model that reads them -------------------------------------
    @property
    def needs_pretrained(self) -> bool:
        """True when the model reads a pretrained network's vectors per segment (its registry spec says so):
        every encoding then needs them beside the mel (:meth:`audio_vectors`, :meth:`track_vectors`)."""
        spec = registry.SPECS.get(self.name)
        return bool(spec is not None and spec.needs_pretrained)

    def audio_vectors(self, y: np.ndarray) -> Optional[np.ndarray]:
        """``(S, 250)`` MusiCNN vectors of decoded audio ``y`` (the samples its mel was made from, by
        :func:`~musiclust.features.audio.load_audio` with :attr:`feature_config`), one per mel segment;
        ``None`` for a model that does not read them (and then MusiCNN is not even imported)."""
        if not self.needs_pretrained:
            return None
        from musiclust.pretrained.store import aligned_features

        return aligned_features(y, self.feature_config).vectors

    def track_vectors(self, track_id: str, root: Path = PRETRAINED_CACHE) -> Optional[np.ndarray]:
        """``(S, 250)`` MusiCNN vectors of a collection track, aligned with its mel segments, from the
        :class:`~musiclust.pretrained.store.PretrainedStore` cache under ``root`` (extracted and cached
        when missing, as training does); ``None`` for a model that does not read them."""
        if not self.needs_pretrained:
            return None
        from musiclust.pretrained.store import PretrainedStore

        features, _ = PretrainedStore(root, self.feature_config).get(Path(self.tracks[self.row(track_id)]["path"]))
        return features.vectors

    # --- placing a new track ---------------------------------------------------------------
    def place(self, mel_db: np.ndarray, lyrics: Optional[str] = None, n_neighbours: int = 5,
              pretrained: Optional[np.ndarray] = None) -> Placement:
        """Cluster, map position and nearest collection tracks of one new track (``pretrained`` ``(S, 250)``:
        its segments' vectors, for a model that reads them: :meth:`audio_vectors`)."""
        point = self.scaler(self.raw_embedding([mel_db], [lyrics], None if pretrained is None else [pretrained]))[0]  # (D,)
        cluster, distance = assign(point[None], self.centres)
        cluster = int(cluster[0])
        members = self.space[self.labels == cluster]
        member_dist = np.linalg.norm(members - self.centres[cluster], axis=1) if len(members) else np.array([np.nan])
        # One exact search serves both the neighbour list and the map position (10 neighbours).
        idx, dist = nearest(point, self.space, max(n_neighbours, 10), sq_norms=self.space_norms())
        coords = place_on_map(point, self.space, self.coords, neighbours=(idx, dist))
        idx, dist = idx[:n_neighbours], dist[:n_neighbours]
        _, has = self._lyrics_rows([lyrics])
        return Placement(
            cluster=cluster,
            distance_to_centre=float(distance[0]),
            cluster_median_distance=float(np.median(member_dist)),
            coords=(float(coords[0]), float(coords[1])),
            neighbours=[self.neighbour(i, d) for i, d in zip(idx, dist)],
            used_lyrics=bool(has[0]) and self.uses_lyrics,
        )

    def neighbour(self, row: int, distance: float) -> Neighbour:
        t = self.tracks[int(row)]
        return Neighbour(t["id"], t["title"], t.get("artist", ""), t.get("group"), t["path"], float(distance))

    def neighbours_of(self, track_id: str, n: int = 5) -> list[Neighbour]:
        row = self.row(track_id)
        idx, dist = nearest(self.space[row], self.space, n, exclude=row, sq_norms=self.space_norms())
        return [self.neighbour(i, d) for i, d in zip(idx, dist)]

    def space_norms(self) -> np.ndarray:
        """``(N,)`` squared norms of ``space``, computed once per collection array (1 ms at 100k tracks)."""
        if self._norms is None or self._norms[0] is not self.space:
            self._norms = (self.space, squared_norms(self.space))
        return self._norms[1]

    def row(self, track_id: str) -> int:
        """Row of a collection track: a dict built once (a scan of 100k track entries took ~5 ms a call)."""
        if self._rows is None or self._rows[0] is not self.tracks:
            self._rows = (self.tracks, {t["id"]: i for i, t in reversed(list(enumerate(self.tracks)))})  # first row wins
        found = self._rows[1].get(track_id)
        if found is None:
            raise ParameterError(f"no track {track_id!r} in model {self.name}")
        return found

    @property
    def uses_lyrics(self) -> bool:
        return self.fusion is not None or bool(self.meta.get("uses_lyrics"))

    @property
    def reads_no_lyrics_as_no_words(self) -> bool:
        """True when a track given without lyrics is placed as one without words (instrumental), not by
        its audio alone: hybrid fusion with ``missing_lyrics="apart"`` (see :class:`HybridFusion`)."""
        return self.fusion is not None and self.fusion.missing_lyrics == "apart"

    @property
    def conditioned_on_label(self) -> bool:
        return bool(type(self.model).conditioned_on_label)

    @property
    def k(self) -> int:
        return len(self.centres)

    # --- decoding ---------------------------------------------------------------------------
    def _decode_batch(self, z: torch.Tensor, label: Optional[int]) -> dict:
        batch = {}
        if self.conditioned_on_label:
            batch["label"] = torch.full((len(z),), int(label if label is not None else 0), dtype=torch.long)
        return batch

    def default_label(self, cluster: int) -> int:
        """The label a conditioned decoder gets for a track without one: its cluster's majority group."""
        groups = [self.tracks[i].get("group") for i in np.flatnonzero(self.labels == cluster)]
        groups = [g for g in groups if g in self.label_names]
        if not groups:
            return 0
        values, counts = np.unique(groups, return_counts=True)
        return self.label_names.index(str(values[counts.argmax()]))

    def reconstruct(self, mel_db: np.ndarray, label: Optional[int] = None, pretrained: Optional[np.ndarray] = None) -> np.ndarray:
        """The model's reconstruction of a whole track's log-mel, in dB, ``(n_mels, S * frames)``
        (``pretrained`` ``(S, D)``: its segments' pretrained vectors, for a model that reads them)."""
        segs = track_segments(mel_db, self.normalizer, self.feature_config.segment_frames)
        with torch.inference_mode():
            mel = torch.from_numpy(segs).unsqueeze(1)  # (S, 1, n_mels, frames)
            batch = {"mel": mel, **self._decode_batch(mel, label)}
            if pretrained is not None:
                batch["pretrained"] = torch.from_numpy(np.asarray(pretrained, np.float32))
            recon = self.model.reconstruct(batch).squeeze(1).numpy()  # (S, n_mels, frames)
        return self.normalizer.invert(np.concatenate(list(recon), axis=1))

    def reconstruction_error(self, mel_db: np.ndarray, label: Optional[int] = None,
                             pretrained: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
        """The reconstruction of a whole track's log-mel and its error in dB², scored as in the evaluation
        and as PCA's (:func:`~musiclust.analysis.reconstruction.reconstruction_mse_db`)."""
        recon = self.reconstruct(mel_db, label, pretrained)
        return recon, reconstruction_mse_db(mel_db, recon)

    def pca_reconstruction(self, mel_db: np.ndarray) -> Optional[tuple[np.ndarray, float]]:
        """The reconstruction reference's (PCA with as many components as the latent) take on a whole
        track, in dB ``(n_mels, S * frames)``, and its error; None for a checkpoint saved without one."""
        if self.pca is None:
            return None
        segs = track_segments(mel_db, self.normalizer, self.feature_config.segment_frames)  # (S, n_mels, frames)
        recon = self.normalizer.invert(np.concatenate(list(self.pca.reconstruct(segs)), axis=1))
        return recon, reconstruction_mse_db(mel_db, recon)

    def decode_latents(self, z: np.ndarray, label: Optional[int] = None) -> np.ndarray:
        """Decode latent points ``(S, latent)`` into consecutive mel segments, in dB ``(n_mels, S * frames)``."""
        with torch.inference_mode():
            zt = torch.from_numpy(np.asarray(z, dtype=np.float32))
            was_training = self.model.training
            self.model.eval()
            out = self.model.decode(zt, self._decode_batch(zt, label))["mel"].squeeze(1).numpy()
            self.model.train(was_training)
        return self.normalizer.invert(np.concatenate(list(out), axis=1))

    def latent_of(self, mel_db: np.ndarray, lyrics: Optional[str] = None, pretrained: Optional[np.ndarray] = None) -> np.ndarray:
        """The model-space latent (not standardised, no fusion part) of one track: ``(latent,)``
        (``pretrained``: its segments' vectors, for a model that reads them)."""
        rows, mask = self._lyrics_rows([lyrics])
        segs = track_segments(mel_db, self.normalizer, self.feature_config.segment_frames)
        with torch.inference_mode():
            return self.embed_segments(segs, rows[0], mask[0], pretrained, whole=True)

    # --- checkpoint round trip --------------------------------------------------------------
    def to_checkpoint(self) -> ckpt.Checkpoint:
        tfidf_meta, tfidf_arrays = self.tfidf.state()
        arrays = {
            "mel_mean": self.normalizer.mean,
            "mel_std": self.normalizer.std,
            "scaler_mean": self.scaler.mean.astype(np.float32),
            "scaler_scale": self.scaler.scale.astype(np.float32),
            "centres": self.centres,
            "space": self.space,
            "labels": self.labels.astype(np.int64),
            "coords": self.coords,
            **{f"tfidf_{k}": v for k, v in tfidf_arrays.items()},
        }
        if self.fusion is not None:
            f = self.fusion
            arrays.update(fusion_audio_mean=f.audio_mean, fusion_components=f.components, fusion_lyrics_mean=f.lyrics_mean)
        if self.pca is not None:
            arrays.update(pca_mean=self.pca.mean_, pca_components=self.pca.components_)
        meta = dict(
            self.meta,
            model=self.name,
            architecture=self.architecture,
            model_config=self.model.config.to_dict(),
            feature_config=self.feature_config.to_dict(),
            tfidf=tfidf_meta,
            tracks=self.tracks,
            label_names=self.label_names,
            conditioned_on_label=self.conditioned_on_label,
            space_unit_norm=bool(self.scaler.unit_norm),
            fusion=(
                {
                    "kind": "hybrid",
                    "weight": self.fusion.weight,
                    "audio_scale": self.fusion.audio_scale,
                    "lyrics_scale": self.fusion.lyrics_scale,
                    "missing_lyrics": self.fusion.missing_lyrics,
                }
                if self.fusion is not None
                else None
            ),
        )
        weights = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        return ckpt.Checkpoint(meta, weights, arrays)

    @classmethod
    def from_checkpoint(cls, checkpoint: ckpt.Checkpoint) -> "ModelBundle":
        meta, arrays = checkpoint.meta, checkpoint.arrays
        where = checkpoint.path.name if checkpoint.path else meta.get("model", "?")
        broken = sorted(
            k for k, v in {**checkpoint.weights, **arrays}.items() if np.asarray(v).dtype.kind in "fc" and not np.isfinite(v).all()
        )
        if broken:  # a model that would place every track at NaN: corrupt, never served
            raise CheckpointError(f"checkpoint {where} holds NaN/Inf values in {', '.join(broken[:3])}: it is corrupt")
        try:
            model = build_model(meta["architecture"], config_class(meta["architecture"]).from_saved(meta["model_config"]))
            state = {k: torch.from_numpy(np.array(v)) for k, v in checkpoint.weights.items()}
            model.load_state_dict(state, strict=True)
            model.eval()
            tfidf = LyricsTfidf.from_state(meta["tfidf"], {k[6:]: v for k, v in arrays.items() if k.startswith("tfidf_")})
            fusion = None
            if meta.get("fusion"):
                f = meta["fusion"]
                fusion = HybridFusion(
                    audio_mean=arrays["fusion_audio_mean"],
                    audio_scale=float(f["audio_scale"]),
                    components=arrays["fusion_components"],
                    lyrics_mean=arrays["fusion_lyrics_mean"],
                    lyrics_scale=float(f["lyrics_scale"]),
                    weight=float(f["weight"]),
                    missing_lyrics=str(f.get("missing_lyrics", "centre")),  # older checkpoints: no such axis
                )
            bundle = cls(
                name=meta["model"],
                architecture=meta["architecture"],
                model=model,
                feature_config=FeatureConfig.from_dict(meta["feature_config"]),
                normalizer=MelNormalizer(arrays["mel_mean"], arrays["mel_std"]),
                tfidf=tfidf,
                scaler=Standardizer(arrays["scaler_mean"], arrays["scaler_scale"], bool(meta.get("space_unit_norm", False))),
                centres=arrays["centres"],
                space=arrays["space"],
                labels=arrays["labels"],
                coords=arrays["coords"],
                tracks=list(meta["tracks"]),
                label_names=list(meta["label_names"]),
                fusion=fusion,
                pca=SegmentPCA.from_arrays(arrays["pca_mean"], arrays["pca_components"]) if "pca_components" in arrays else None,
                meta=meta,
            )
        except KeyError as exc:
            raise CheckpointError(f"checkpoint {where} lacks {exc}: it was made by another version or is damaged") from None
        except (RuntimeError, ValueError, TypeError) as exc:
            # load_state_dict raises RuntimeError on missing/unexpected keys and shape mismatches.
            raise CheckpointError(f"checkpoint {where} does not match its architecture: {str(exc)[:300]}") from None
        except MusiclustError as exc:
            raise CheckpointError(f"checkpoint {where} is invalid: {exc}") from None
        n = len(bundle.tracks)
        if not (bundle.space.shape[0] == bundle.labels.shape[0] == bundle.coords.shape[0] == n):
            raise CheckpointError(f"checkpoint {where} is inconsistent: {n} tracks but arrays of other lengths")
        if bundle.space.shape[1] != bundle.centres.shape[1]:
            raise CheckpointError(f"checkpoint {where} is inconsistent: centre and embedding sizes differ")
        if bundle.pca is not None:
            flat = bundle.feature_config.n_mels * bundle.feature_config.segment_frames
            c, m = bundle.pca.components_, bundle.pca.mean_
            if c.ndim != 2 or c.shape[1] != flat or m.shape != (flat,):
                raise CheckpointError(f"checkpoint {where} is inconsistent: its PCA reference does not fit {flat}-value segments")
        bad = [t for t in bundle.tracks if not _track_entry_ok(t)] + [g for g in bundle.label_names if not isinstance(g, str)]
        if bad:  # checked here, not when a page first shows a neighbour (a KeyError in the page)
            raise CheckpointError(f"checkpoint {where} is inconsistent: a malformed track or label entry ({str(bad[0])[:80]})")
        return bundle


def _track_entry_ok(track) -> bool:
    return (
        isinstance(track, dict)
        and all(isinstance(track.get(key), str) for key in ("id", "title", "path"))
        and isinstance(track.get("artist", ""), str)
        and (track.get("group") is None or isinstance(track.get("group"), str))
    )
