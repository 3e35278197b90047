"""Lyrics as TF-IDF vectors (scikit-learn), with missing lyrics marked missing, never faked.

The fitted vocabulary and IDF weights are plain arrays, so they are saved in a checkpoint as JSON
and ``.npy`` and loaded without pickle.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import sparse

from musiclust.errors import ParameterError

TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"  # words of 2+ letters in any script; digits and '_' are noise in lyrics


class LyricsTfidf:
    """TF-IDF over the tracks that have lyrics; ``transform`` returns L2-normalised rows and a mask.

    ``max_df`` drops words in more than half the lyric-bearing tracks (articles and function words
    of every language in the collection, without per-language stop lists).
    """

    def __init__(self, max_features: int = 1000, min_df: int = 2, max_df: float = 0.5):
        self.max_features = max_features
        self.min_df = min_df
        self.max_df = max_df

    def _vectorizer(self, vocabulary=None):
        from sklearn.feature_extraction.text import TfidfVectorizer  # here: importing sklearn is slow, and only a fitted model needs it

        return TfidfVectorizer(
            max_features=self.max_features,
            min_df=self.min_df,
            max_df=self.max_df,
            sublinear_tf=True,
            strip_accents="unicode",
            token_pattern=TOKEN_PATTERN,
            vocabulary=vocabulary,
            dtype=np.float32,
        )

    def fit(self, lyrics: Sequence[Optional[str]]) -> "LyricsTfidf":
        texts = [t for t in lyrics if t]
        self.vectorizer_ = None
        if len(texts) >= max(2, self.min_df):
            vectorizer = self._vectorizer()
            try:
                vectorizer.fit(texts)
            except ValueError:  # every word pruned by min_df/max_df: the collection's lyrics carry no shared words
                vectorizer = None
            self.vectorizer_ = vectorizer
        return self

    @property
    def dim(self) -> int:
        return 0 if self.vectorizer_ is None else len(self.vectorizer_.vocabulary_)

    @property
    def vocabulary(self) -> list[str]:
        if self.vectorizer_ is None:
            return []
        return list(self.vectorizer_.get_feature_names_out())

    def transform(self, lyrics: Sequence[Optional[str]]) -> tuple[np.ndarray, np.ndarray]:
        """``(N, V)`` float32 TF-IDF and ``(N,)`` bool mask of tracks that have lyrics with known words."""
        matrix, mask = self.transform_sparse(lyrics)
        return matrix.toarray(), mask

    def transform_sparse(self, lyrics: Sequence[Optional[str]]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """As :meth:`transform`, as a CSR matrix: a collection's rows are mostly zeros (a few dozen words
        of a 1,000-word vocabulary, none for instrumental tracks), and a dense ``(N, V)`` float32 copy
        is 4 KB a track — 381 MB at 100k tracks, the part of training memory that grew with N."""
        if not hasattr(self, "vectorizer_"):
            raise ParameterError("LyricsTfidf must be fitted before transform")
        n = len(lyrics)
        if self.vectorizer_ is None:
            return sparse.csr_matrix((n, self.dim), dtype=np.float32), np.zeros(n, dtype=bool)
        texts = [t if t else "" for t in lyrics]  # no text: an all-zero row
        matrix = self.vectorizer_.transform(texts).astype(np.float32).tocsr()  # (N, V)
        mask = np.diff(matrix.indptr) > 0  # lyrics with no known word carry nothing: treated as missing
        return matrix, mask

    def top_terms(self, vectors: np.ndarray, k: int = 8) -> list[str]:
        """The highest-weighted words of the mean of ``vectors`` (e.g. a cluster's lyric-bearing tracks)."""
        if self.dim == 0 or vectors.shape[0] == 0:
            return []
        mean = np.asarray(vectors.mean(axis=0)).ravel()  # dense rows or CSR
        order = np.argsort(mean)[::-1][:k]
        words = self.vocabulary
        return [words[i] for i in order if mean[i] > 0]

    def state(self) -> tuple[dict, dict]:
        """(JSON-able params and vocabulary, arrays) for a checkpoint."""
        meta = {"max_features": self.max_features, "min_df": self.min_df, "max_df": self.max_df, "vocabulary": self.vocabulary}
        arrays = {"idf": self.vectorizer_.idf_.astype(np.float32)} if self.vectorizer_ is not None else {}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict) -> "LyricsTfidf":
        model = cls(meta["max_features"], meta["min_df"], meta["max_df"])
        model.vectorizer_ = None
        if meta["vocabulary"]:
            idf = np.asarray(arrays["idf"], dtype=np.float64)
            if idf.shape != (len(meta["vocabulary"]),):
                raise ParameterError("TF-IDF state is inconsistent: vocabulary and idf sizes differ")
            vectorizer = model._vectorizer(vocabulary=meta["vocabulary"])
            vectorizer.fit(meta["vocabulary"])  # sets the fixed vocabulary; idf is overwritten below
            vectorizer.idf_ = idf
            model.vectorizer_ = vectorizer
        return model
