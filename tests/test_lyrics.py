"""Lyrics cleaning on real text from the music21 corpus (and the hyphenation shapes named in the brief)."""

from __future__ import annotations

import warnings

import pytest

from musiclust.data.lyrics import clean_lyrics, guess_language


def _assembled(corpus_path: str, part_index: int = 0) -> str:
    """The raw syllables music21 assembles for one part of a corpus score."""
    from music21 import corpus, text

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = corpus.parse(corpus_path, forceSource=True)
    return text.assembleLyrics(score.parts[part_index]) or ""


@pytest.fixture(scope="module")
def madrigal_soft_hyphens() -> str:
    return _assembled("monteverdi/madrigal.3.1.mxl")


def test_soft_hyphen_syllables_are_joined(madrigal_soft_hyphens):
    raw = madrigal_soft_hyphens
    assert "gio\u00advi\u00ad" in raw  # the noise really is in the score
    cleaned = clean_lyrics(raw)
    assert cleaned.startswith("La giovinetta pianta si fa")
    assert "\u00ad" not in cleaned
    assert "  " not in cleaned


def test_plain_hyphen_syllables_are_joined():
    raw = _assembled("monteverdi/madrigal.3.10.mxl")
    assert "quan- to" in raw
    cleaned = clean_lyrics(raw)
    assert "quanto" in cleaned
    assert "-" not in cleaned


def test_question_mark_used_as_hyphen_is_joined():
    raw = _assembled("monteverdi/madrigal.3.15.mxl")
    assert raw.startswith("Vi? vrö")
    cleaned = clean_lyrics(raw)
    assert cleaned.startswith("Vivrö")
    assert "?" not in cleaned


def test_u_acute_used_as_hyphen_is_joined():
    raw = _assembled("monteverdi/madrigal.3.16.mxl")
    assert "lasú so" in raw
    cleaned = clean_lyrics(raw)
    assert "lasso" in cleaned and "dove" in cleaned
    assert "ú" not in cleaned


def test_real_question_marks_and_clean_text_survive():
    """Bach's chorale text is already clean: cleaning must not change a word of it."""
    raw = _assembled("bach/bwv148.6.mxl")
    assert "Sünden?" in raw
    assert clean_lyrics(raw) == " ".join(raw.split())


def test_verse_numbers_and_editorial_brackets_are_removed():
    raw = _assembled("trecento/PMFC_12_1-Kyrie Rondello.xml")
    assert raw.startswith("1.3.7.8.")
    assert clean_lyrics(raw) == "Kyrie eleison. Kyrie eleison."
    assert clean_lyrics("[D]icant nunc") == "Dicant nunc"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Herz- lich lieb hab ich dich", "Herzlich lieb hab ich dich"),
        ("Her - zlich lieb", "Herzlich lieb"),
        ("Her -zlich  lieb\n", "Herzlich lieb"),
        ("wohl , gut ; ~ --", "wohl gut"),
    ],
)
def test_hyphen_shapes_and_stray_punctuation(raw, expected):
    assert clean_lyrics(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", " - , ; ... ", "~ _ [ ] 1.2."])
def test_nothing_meaningful_gives_empty(raw):
    assert clean_lyrics(raw) == ""


def test_language_guess_on_real_texts(madrigal_soft_hyphens):
    assert guess_language(clean_lyrics(_assembled("bach/bwv148.6.mxl"))) == "de"
    assert guess_language(clean_lyrics(madrigal_soft_hyphens)) == "it"
    assert guess_language(clean_lyrics(_assembled("trecento/PMFC_12_10a-Credo PMFC12.10a.xml"))) == "la"
    assert guess_language("") == ""
    assert guess_language("xyz qwv") == ""


def test_sparse_tfidf_holds_the_dense_rows_and_trains_the_same_batches(real_table, real_segments):
    """The collection's TF-IDF is kept sparse: the same rows as the dense transform, the same mask, the
    same hybrid-fusion join, and training batches identical to the ones built from the dense matrix."""
    import numpy as np
    import torch
    from scipy import sparse

    from musiclust.features.tfidf import LyricsTfidf
    from musiclust.models import HybridFusion
    from musiclust.models.training import SegmentData

    lyrics = list(real_table.lyrics) + [None, "", "zzzz qqqq"]  # no text, empty text, no known word
    tfidf = LyricsTfidf().fit(real_table.lyrics)
    dense, mask = tfidf.transform(lyrics)
    csr, csr_mask = tfidf.transform_sparse(lyrics)
    assert sparse.issparse(csr) and csr.dtype == np.float32 and csr.nnz < 0.2 * dense.size
    np.testing.assert_array_equal(csr.toarray(), dense)
    np.testing.assert_array_equal(csr_mask, mask)
    assert mask.any() and not mask[-3:].any()
    assert tfidf.top_terms(csr[mask]) == tfidf.top_terms(dense[mask])

    audio = np.random.default_rng(0).normal(size=(len(lyrics), 8)).astype(np.float32)
    join = HybridFusion.fit(audio, dense, mask, weight=1.0)
    # the truncated SVD runs other arithmetic on a sparse input: the join agrees to 1e-4, not bit for bit
    np.testing.assert_allclose(HybridFusion.fit(audio, csr, mask, weight=1.0)(audio, csr, mask), join(audio, dense, mask), atol=1e-4)

    segs, n = real_segments["segments"], len(real_segments["segments"])
    a = SegmentData(segs, lyrics=dense[:n]).batch(np.arange(n), np.zeros(n, dtype=int))
    b = SegmentData(segs, lyrics=csr[:n]).batch(np.arange(n), np.zeros(n, dtype=int))
    assert torch.equal(a["lyrics"], b["lyrics"]) and torch.equal(a["has_lyrics"], b["has_lyrics"])
