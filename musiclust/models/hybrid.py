"""Hybrid fusion: a post-hoc join of the trained ConvVAE's track embedding with an LSA reduction of
the lyrics TF-IDF. Not a network: training one for it would add nothing a weighted join does not,
and a join can be re-weighted without retraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musiclust.determinism import reproducible
from musiclust.errors import ParameterError

MISSING_LYRICS = ("apart", "centre")  # where hybrid fusion puts a track without lyrics (see HybridFusion)
# Below this many lyric-bearing tracks the join is not fitted: with one text there is no lyrics axis
# to learn, and the "no words" axis would only set that one track apart.
MIN_LYRIC_TRACKS = 3


def check_missing_lyrics(value: str, name: str = "missing_lyrics") -> None:
    """A clear error for a value outside :data:`MISSING_LYRICS` (checked by ``Settings`` before any work)."""
    if value not in MISSING_LYRICS:
        raise ParameterError(f"{name} must be one of {', '.join(MISSING_LYRICS)}, got {value!r}")



@dataclass
class HybridFusion:
    """The hybrid-fusion join, fitted once on a collection and reusable for new tracks.

    ``audio block (N, d_a) ++ weight * lyrics block (N, k) [++ weight * no-words axis (N, 1)]``, where the
    audio block is the ConvVAE track embedding and the lyrics block the LSA (truncated SVD) of the TF-IDF
    rows of tracks with lyrics. Each block is centred and divided by the square root of its total
    variance (not z-scored per dimension, which would blow up inactive VAE dimensions and minor LSA
    components to full weight), so with ``weight = 1`` both blocks contribute equally to squared distances.

    Where a track without lyrics goes is ``missing_lyrics``:

    * ``"apart"`` (the default; what a zero TF-IDF row does in a plain join, where it is equally far
      from every unit-length text): one more axis, "no words", on which such tracks stand at
      ``weight`` and lyric-bearing tracks at 0. A track without words is then, on average, as far from
      a text as two texts are from each other (both ``2 * weight**2`` in squared distance), instead of
      at the texts' average. Absence
      of words is treated as information: right for instrumental music, wrong where lyrics are merely
      not supplied (then use ``"centre"``, or the product of experts, which encodes such a track by its
      audio alone by design).
    * ``"centre"``: a lyrics block of 0, the centre of the lyric-bearing tracks, so their place among
      lyric-bearing tracks is set by audio alone. Among themselves they are 0 apart in the lyrics block,
      which draws them together: on the default set unrelated instrumental groups then share clusters.

    Do not z-score the result per dimension afterwards: that undoes ``weight``. All fields are plain
    arrays, floats and strings, so a checkpoint stores them without pickle.
    """

    audio_mean: np.ndarray  # (d_a,)
    audio_scale: float
    components: np.ndarray  # (k, V) LSA directions
    lyrics_mean: np.ndarray  # (k,)
    lyrics_scale: float
    weight: float
    missing_lyrics: str = "centre"  # what checkpoints written before the choice existed did

    def __post_init__(self) -> None:
        check_missing_lyrics(self.missing_lyrics)

    @classmethod
    @reproducible()  # the SVD's BLAS pinned to one thread: the same join on any machine's core count
    def fit(
        cls,
        audio_mu: np.ndarray,
        tfidf: np.ndarray,
        has_lyrics: np.ndarray,
        weight: float = 0.5,
        n_components: int = 16,
        seed: int = 0,
        missing_lyrics: str = "apart",
    ) -> "HybridFusion":
        audio_mu, tfidf, has_lyrics = _check_hybrid_inputs(audio_mu, tfidf, has_lyrics)
        if not weight >= 0:
            raise ParameterError(f"hybrid weight must be >= 0, got {weight!r}")
        audio_mean = audio_mu.mean(axis=0)
        audio_scale = _block_scale(audio_mu - audio_mean)
        rows = tfidf[has_lyrics]
        k = min(n_components, rows.shape[0] - 1, tfidf.shape[1] - 1)
        if k < 1:  # fewer than 2 lyric-bearing tracks or a 1-word vocabulary: no lyrics axis to learn
            components = np.zeros((0, tfidf.shape[1]), dtype=np.float32)
        else:
            from sklearn.decomposition import TruncatedSVD  # here: serving never fits, and importing sklearn is slow

            components = TruncatedSVD(k, random_state=seed).fit(rows).components_.astype(np.float32)
        coords = np.asarray(rows @ components.T)  # (n_lyrics, k)
        lyrics_mean = coords.mean(axis=0) if len(coords) else np.zeros(len(components), dtype=np.float32)
        return cls(
            audio_mean, audio_scale, components, lyrics_mean, _block_scale(coords - lyrics_mean), float(weight), missing_lyrics
        )

    def __call__(self, audio_mu: np.ndarray, tfidf: np.ndarray, has_lyrics: np.ndarray) -> np.ndarray:
        """``(N, d_a + k [+ 1])`` float32 hybrid embedding of any tracks (collection or new uploads)."""
        audio_mu, tfidf, has_lyrics = _check_hybrid_inputs(audio_mu, tfidf, has_lyrics)
        if audio_mu.shape[1] != self.audio_mean.shape[0] or tfidf.shape[1] != self.components.shape[1]:
            raise ParameterError(
                f"hybrid fusion was fitted on {self.audio_mean.shape[0]}-d audio and {self.components.shape[1]}-word "
                f"lyrics, got {audio_mu.shape[1]} and {tfidf.shape[1]}"
            )
        audio = (audio_mu - self.audio_mean) / self.audio_scale
        lyrics = (np.asarray(tfidf @ self.components.T) - self.lyrics_mean) / self.lyrics_scale  # (N, k)
        lyrics[~has_lyrics] = 0.0
        blocks = [audio, self.weight * lyrics]  # (N, d_a), (N, k)
        if self.missing_lyrics == "apart":
            blocks.append(self.weight * (~has_lyrics).astype(np.float32)[:, None])  # (N, 1) the no-words axis
        return np.concatenate(blocks, axis=1).astype(np.float32)


def hybrid_embedding(
    audio_mu: np.ndarray, lyrics_feats: np.ndarray, has_lyrics: np.ndarray, weight: float = 0.5, missing_lyrics: str = "apart"
) -> np.ndarray:
    """Hybrid fusion of a whole collection in one call: ``HybridFusion.fit(...)`` applied to its own input.

    ``audio_mu`` is ``(N, d_a)`` ConvVAE track embeddings, ``lyrics_feats`` the ``(N, V)`` TF-IDF and
    ``has_lyrics`` the ``(N,)`` mask; see :class:`HybridFusion` for scaling and tracks without lyrics.
    """
    fusion = HybridFusion.fit(audio_mu, lyrics_feats, has_lyrics, weight, missing_lyrics=missing_lyrics)
    return fusion(audio_mu, lyrics_feats, has_lyrics)


def _block_scale(centred: np.ndarray) -> float:
    """Square root of the total variance of a centred block (1 when it has none, to avoid 0/0)."""
    total = float((centred**2).sum(axis=1).mean()) if len(centred) else 0.0
    return float(np.sqrt(total)) if total > 1e-12 else 1.0


def _check_hybrid_inputs(audio_mu, tfidf, has_lyrics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy import sparse  # here: the registry reads this module's constants, and an app page needs no SciPy

    audio_mu = np.asarray(audio_mu, dtype=np.float32)
    # a collection's TF-IDF stays sparse (CSR): only its (N, k) projection is dense
    tfidf = sparse.csr_matrix(tfidf, dtype=np.float32) if sparse.issparse(tfidf) else np.asarray(tfidf, dtype=np.float32)
    has_lyrics = np.asarray(has_lyrics, dtype=bool)
    n = audio_mu.shape[0]
    if audio_mu.ndim != 2 or tfidf.ndim != 2 or tfidf.shape[0] != n or has_lyrics.shape != (n,):
        raise ParameterError(
            f"hybrid fusion needs audio (N, d), lyrics (N, V) and has_lyrics (N,); got {audio_mu.shape}, "
            f"{tfidf.shape}, {has_lyrics.shape}"
        )
    return audio_mu, tfidf, has_lyrics
