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


def test_tfidf_transform_is_scikit_learns_and_serving_needs_no_scikit_learn(real_table):
    """The NumPy transform gives scikit-learn's TfidfVectorizer rows (same vocabulary and IDF) on the real
    lyrics and on accented, mixed-script, digit-bearing text; a saved and reloaded model gives the same bits."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    from musiclust.features.tfidf import TOKEN_PATTERN, LyricsTfidf

    extra = ["Schöne Grüße, MÄDCHEN und Mädchen!", "déjà vu déjà 2024 x_y", "Ἐν ἀρχῇ ἦν ὁ λόγος", "Herr Herr Herr Gott", "", None]
    lyrics = list(real_table.lyrics) + extra
    fitted = LyricsTfidf().fit(lyrics)
    assert fitted.dim > 20
    ref = TfidfVectorizer(sublinear_tf=True, strip_accents="unicode", token_pattern=TOKEN_PATTERN, dtype=np.float32,
                          vocabulary=fitted.vocabulary)
    ref.fit(fitted.vocabulary)
    ref.idf_ = fitted.idf_.astype(np.float64)
    ours, mask = fitted.transform_sparse(lyrics)
    theirs = ref.transform([t or "" for t in lyrics])
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_allclose(ours.data, theirs.data, rtol=2e-6)
    assert mask.tolist() == (np.diff(theirs.indptr) > 0).tolist() and not mask[-2:].any()
    meta, arrays = fitted.state()
    again = LyricsTfidf.from_state(meta, arrays).transform_sparse(lyrics)[0]
    assert (again != ours).nnz == 0


def test_an_upload_with_lyrics_imports_no_scikit_learn(trained_checkpoints, real_music_folder, real_clip_paths):
    """Serving a model that reads lyrics (the default, mvae_poe) needs torch, not scikit-learn: a fresh
    process answers an upload with lyrics and has not imported sklearn."""
    from test_lazy_imports import heavy_imported

    code = ("from pathlib import Path\nfrom musiclust.service import Service\n"
            f"s = Service({str(real_music_folder)!r}, Path({str(trained_checkpoints)!r}))\n"
            f"a = s.analyse('mvae_poe', Path({str(real_clip_paths[0])!r}), 'Herr Gott dich loben wir')\n"
            "assert a.placement.used_lyrics, 'the lyrics were read'")
    imported = heavy_imported(code)[-1]
    assert "torch" in imported and "sklearn" not in imported, imported
