"""The fused baseline sees what the fused model sees: MFCC statistics joined with the lyrics exactly as
``conv_vae_fusion`` joins its latent (same weight, rank and "no words" axis), on the real test clips."""

import dataclasses

import numpy as np
import pytest
from scipy import sparse

from musiclust.analysis.baselines import mfcc_embedding, mfcc_lyrics_embedding
from musiclust.analysis.clustering import Standardizer
from musiclust.models.hybrid import MIN_LYRIC_TRACKS


@pytest.fixture(scope="module")
def prepared(real_table):
    from musiclust.pipeline import Settings, prepare

    return prepare(real_table, Settings(latent_dim=8, seed=0))


def _fused(prep, has_lyrics=None):
    s = prep.settings
    has = prep.has_lyrics if has_lyrics is None else has_lyrics
    return mfcc_lyrics_embedding(prep.table, prep.lyrics, has, s.fusion_weight, s.fusion_missing_lyrics, s.fusion_rank, s.seed)


def test_the_fused_baseline_is_the_mfcc_block_beside_the_lyrics_block_and_the_no_words_axis(prepared):
    has = prepared.has_lyrics
    assert MIN_LYRIC_TRACKS <= has.sum() < len(has), "the test set has tracks with and without lyrics"
    mfcc = mfcc_embedding(prepared.table)
    fused = _fused(prepared)
    d, w = mfcc.shape[1], prepared.settings.fusion_weight
    assert fused.shape[0] == len(has) and fused.shape[1] > d + 1
    # the audio block: the z-scored MFCC statistics, centred and scaled to unit total variance as a block
    z = Standardizer.fit(mfcc)(mfcc)
    centred = z - z.mean(axis=0)
    assert np.allclose(fused[:, :d], centred / np.sqrt((centred**2).sum(axis=1).mean()), atol=1e-4)
    # the no-words axis: the weight for a track without lyrics, 0 for one with them; their lyrics block is 0
    assert np.array_equal(fused[:, -1], np.where(has, 0.0, w).astype(np.float32))
    assert not fused[~has, d:-1].any() and fused[has, d:-1].any()
    # the lyrics block weighs as much as the audio block, times the weight: mean squared norm w² over the texts
    lyrics_block = fused[has, d:-1]
    assert (lyrics_block**2).sum(axis=1).mean() == pytest.approx(w**2, rel=1e-4)
    assert (fused[:, :d] ** 2).sum(axis=1).mean() == pytest.approx(1.0, rel=1e-4)


def test_too_few_tracks_with_lyrics_leave_the_fused_baseline_to_mfcc(prepared):
    from musiclust.analysis.evaluation import baseline_scores

    few = np.zeros_like(prepared.has_lyrics)
    few[np.flatnonzero(prepared.has_lyrics)[: MIN_LYRIC_TRACKS - 1]] = True
    assert _fused(prepared, few) is None
    no_lyrics = dataclasses.replace(prepared, has_lyrics=np.zeros_like(prepared.has_lyrics),
                                    lyrics=sparse.csr_matrix(prepared.lyrics.shape, dtype=np.float32))
    assert "same as mfcc_kmeans" in baseline_scores("mfcc_lyrics_kmeans", no_lyrics)["note"]


def test_evaluate_scores_the_fused_baseline_beside_mfcc(real_table):
    from musiclust.analysis.evaluation import evaluate
    from musiclust.pipeline import Settings

    summary, rows = evaluate(real_table, ["mfcc_kmeans", "mfcc_lyrics_kmeans"], Settings(latent_dim=8, seed=0), seeds=2)
    scores = summary.set_index("model")
    assert set(scores.index) == {"mfcc_kmeans", "mfcc_lyrics_kmeans"}
    assert all(0 <= scores.loc[m, "nmi"] <= 1 for m in scores.index)
    # the same seed gives the same fused scores (the SVD and k-means are seeded)
    again, _ = evaluate(real_table, ["mfcc_lyrics_kmeans"], Settings(latent_dim=8, seed=0), seeds=1)
    first = next(r for r in rows if r["model"] == "mfcc_lyrics_kmeans" and r["seed"] == 0)
    assert again.set_index("model").loc["mfcc_lyrics_kmeans", "nmi"] == pytest.approx(first["nmi"], abs=1e-12)
