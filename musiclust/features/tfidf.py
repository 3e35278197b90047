"""Lyrics as TF-IDF vectors, with missing lyrics marked missing, never faked.

scikit-learn's ``TfidfVectorizer`` learns the vocabulary and IDF weights (:meth:`LyricsTfidf.fit`); the
transform is written here with NumPy and SciPy, the same arithmetic (lower case, accents stripped, the
token pattern, ``1 + log(tf)`` times IDF, rows L2-normalised; ``tests/test_lyrics.py`` compares it with
scikit-learn's), so a served model never imports scikit-learn: that import was 3.3 s of a first upload.
Training and serving both use it, so a track gets the same vector in both. The fitted vocabulary and
IDF weights are plain arrays, saved in a checkpoint as JSON and ``.npy`` and loaded without pickle.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Optional, Sequence

import numpy as np
from scipy import sparse

from musiclust.errors import ParameterError

TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"  # words of 2+ letters in any script; digits and '_' are noise in lyrics
_TOKEN = re.compile(TOKEN_PATTERN)


def lyric_words(text: str) -> list[str]:
    """The words of ``text`` as the vectorizer reads them: lower case, accents stripped (NFKD, combining
    marks dropped, as scikit-learn's ``strip_accents="unicode"``), then :data:`TOKEN_PATTERN`."""
    text = text.lower()
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _TOKEN.findall(text)


class LyricsTfidf:
    """TF-IDF over the tracks that have lyrics; ``transform`` returns L2-normalised rows and a mask.

    ``max_df`` drops words in more than half the lyric-bearing tracks (articles and function words
    of every language in the collection, without per-language stop lists). Fitted state: ``vocabulary_``
    (the words, in column order) and ``idf_`` (``(V,)`` float32); both empty when the collection's
    lyrics carry no shared word.
    """

    def __init__(self, max_features: int = 1000, min_df: int = 2, max_df: float = 0.5):
        self.max_features = max_features
        self.min_df = min_df
        self.max_df = max_df

    def fit(self, lyrics: Sequence[Optional[str]]) -> "LyricsTfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer  # here: importing sklearn is slow, and only training needs it

        texts = [t for t in lyrics if t]
        words, idf = [], np.zeros(0, dtype=np.float32)
        if len(texts) >= max(2, self.min_df):
            vectorizer = TfidfVectorizer(max_features=self.max_features, min_df=self.min_df, max_df=self.max_df, sublinear_tf=True,
                                         strip_accents="unicode", token_pattern=TOKEN_PATTERN, dtype=np.float32)
            try:
                vectorizer.fit(texts)
                words, idf = list(vectorizer.get_feature_names_out()), vectorizer.idf_.astype(np.float32)
            except ValueError:  # every word pruned by min_df/max_df: the collection's lyrics carry no shared words
                pass
        self._set(words, idf)
        return self

    def _set(self, words: list[str], idf: np.ndarray) -> None:
        self.vocabulary_, self.idf_ = list(words), np.asarray(idf, dtype=np.float32)
        self._column = {w: i for i, w in enumerate(self.vocabulary_)}

    @property
    def dim(self) -> int:
        return len(self.vocabulary_) if hasattr(self, "vocabulary_") else 0

    @property
    def vocabulary(self) -> list[str]:
        return list(self.vocabulary_) if hasattr(self, "vocabulary_") else []

    def transform(self, lyrics: Sequence[Optional[str]]) -> tuple[np.ndarray, np.ndarray]:
        """``(N, V)`` float32 TF-IDF and ``(N,)`` bool mask of tracks that have lyrics with known words."""
        matrix, mask = self.transform_sparse(lyrics)
        return matrix.toarray(), mask

    def transform_sparse(self, lyrics: Sequence[Optional[str]]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """As :meth:`transform`, as a CSR matrix: a collection's rows are mostly zeros (a few dozen words
        of a 1,000-word vocabulary, none for instrumental tracks), and a dense ``(N, V)`` float32 copy
        is 4 KB a track — 381 MB at 100k tracks, the part of training memory that grew with N."""
        if not hasattr(self, "vocabulary_"):
            raise ParameterError("LyricsTfidf must be fitted before transform")
        n = len(lyrics)
        indptr, columns, counts = [0], [], []
        for text in lyrics:
            found = Counter(self._column[w] for w in lyric_words(text) if w in self._column) if text and self.dim else {}
            for column in sorted(found):
                columns.append(column)
                counts.append(found[column])
            indptr.append(len(columns))
        data = np.asarray(counts, dtype=np.float32)  # (nnz,) term counts
        cols = np.asarray(columns, dtype=np.int32)
        data = (1.0 + np.log(data)) * self.idf_[cols]  # sublinear tf times idf, float32
        rows = np.repeat(np.arange(n), np.diff(indptr))
        norms = np.sqrt(np.bincount(rows, weights=data.astype(np.float64) ** 2, minlength=n))  # (N,) row L2 norms
        data = (data / norms[rows]).astype(np.float32)
        matrix = sparse.csr_matrix((data, cols, np.asarray(indptr, dtype=np.int32)), shape=(n, self.dim), dtype=np.float32)
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
        arrays = {"idf": self.idf_.astype(np.float32)} if self.dim else {}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict) -> "LyricsTfidf":
        model = cls(meta["max_features"], meta["min_df"], meta["max_df"])
        words = list(meta["vocabulary"] or [])
        idf = np.asarray(arrays["idf"], dtype=np.float32) if words else np.zeros(0, dtype=np.float32)
        if idf.shape != (len(words),):
            raise ParameterError("TF-IDF state is inconsistent: vocabulary and idf sizes differ")
        model._set(words, idf)
        return model
