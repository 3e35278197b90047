"""Reconstruction error: one yardstick for the VAEs and for PCA, and the VAEs beat PCA of their latent size."""

import json

import numpy as np
import pytest

from musiclust.analysis.baselines import SegmentPCA, pca_embedding, pca_reconstruction_mse_db
from musiclust.analysis.reconstruction import mean_reconstruction_mse_db, reconstruction_mse_db
from musiclust.errors import ParameterError
from musiclust.features.mel import segments


def test_mse_is_in_db_squared_over_the_segments_the_model_saw():
    rng = np.random.default_rng(0)
    original = rng.normal(-40, 10, (16, 50)).astype(np.float32)
    recon = original[:, :48] + 3.0  # two 24-frame segments, 3 dB too loud; frames 48-49 never modelled
    assert reconstruction_mse_db(original, recon) == pytest.approx(9.0)
    # a track shorter than one segment is tiled to fill it: the error is against that same tiling
    short = original[:, :10]
    tiled = segments(short, 24)[0]  # (16, 24)
    assert reconstruction_mse_db(short, tiled) == pytest.approx(0.0, abs=1e-12)
    assert reconstruction_mse_db(short, tiled - 2.0) == pytest.approx(4.0)
    # tracks weigh the same however long they are
    pairs = [(original, original[:, :48] + 1.0), (short, tiled + 3.0)]
    assert mean_reconstruction_mse_db(iter(pairs)) == pytest.approx(5.0)
    assert np.isnan(mean_reconstruction_mse_db([]))


@pytest.mark.parametrize(
    "original, recon",
    [
        (np.zeros((16, 50)), np.zeros((8, 48))),  # other mel bands
        (np.zeros((16, 50)), np.zeros(48)),
        (np.zeros((16, 0)), np.zeros((16, 24))),
        (np.zeros((16, 50)), np.zeros((16, 0))),
    ],
)
def test_mismatched_reconstructions_are_refused(original, recon):
    with pytest.raises(ParameterError, match="reconstruction must be"):
        reconstruction_mse_db(original, recon)


@pytest.fixture(scope="module")
def prepared(real_table):
    from musiclust.pipeline import Settings, prepare

    return prepare(real_table, Settings(latent_dim=8, seed=0))


def test_pca_reference_reconstructs_better_with_more_components(prepared):
    table, train, val = prepared.table, prepared.train_rows, prepared.val_rows
    train_segments = [prepared.segments[i] for i in train]
    errors = {}
    for dim in (2, 8, sum(len(s) for s in train_segments)):
        pca = SegmentPCA(dim, seed=0).fit(train_segments)
        errors[dim] = {
            part: pca_reconstruction_mse_db(pca, table, prepared.normalizer, rows, prepared.segments)
            for part, rows in (("train", train), ("val", val))
        }
    full = max(errors)
    # As many components as training segments reproduce the training tracks (up to float32 rounding) ...
    assert errors[full]["train"] < 1e-3
    # ... and more components reconstruct unseen tracks better, from a clearly nonzero error
    assert errors[2]["val"] > errors[8]["val"] > errors[full]["val"] > 1.0
    # the segments argument is only a shortcut: rebuilt from the table they give the same error
    pca = SegmentPCA(8, seed=0).fit(train_segments)
    assert pca_reconstruction_mse_db(pca, table, prepared.normalizer, val) == pytest.approx(errors[8]["val"], rel=1e-6)
    embedding = pca_embedding(table, prepared.normalizer, train, 8, 0, segments=prepared.segments, pca=pca)
    assert embedding.shape == (len(table), 8)
    assert np.allclose(embedding, pca_embedding(table, prepared.normalizer, train, 8, 0), atol=1e-4)


def test_basic_vae_starts_as_the_training_tracks_pca_and_its_training_keeps_it_at_least_that_good(prepared):
    """BasicVAE's fixed linear code (models/basic_vae.py): untrained, it reconstructs the held-out tracks
    exactly as PCA of its latent size does; trained, no worse than PCA plus a tolerance from the data
    (the spread of PCA's per-track errors); and a checkpoint from before the code loads as the MLP alone."""
    import torch

    from musiclust.analysis.reconstruction import reconstruction_mse_db
    from musiclust.models import build_model
    from musiclust.pipeline import model_config, reconstruction_error, train_model

    pca = prepared.segment_pca()
    model = build_model("basic_vae", model_config("basic_vae", prepared), seed=0)
    mlp_alone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("code_")}
    model.fit_linear_code(pca.mean_, pca.components_, pca.variance_)
    for i in prepared.val_rows:
        segs = torch.from_numpy(prepared.segments[i][:, None])  # (S, 1, n_mels, frames)
        assert np.allclose(model.reconstruct({"mel": segs})[:, 0].numpy(), pca.reconstruct(prepared.segments[i]), atol=1e-3)
    pca_error = pca_reconstruction_mse_db(pca, prepared.table, prepared.normalizer, prepared.val_rows, prepared.segments)
    per_track = [reconstruction_mse_db(prepared.table.mels[i], prepared.normalizer.invert(np.concatenate(list(
        pca.reconstruct(prepared.segments[i])), axis=1))) for i in prepared.val_rows]
    trained = train_model("basic_vae", prepared)
    assert reconstruction_error(trained, prepared) <= pca_error + np.std(per_track) / np.sqrt(len(per_track))
    # an old checkpoint (no code buffers) loads strictly, as the network it was: the code stays 0
    old = build_model("basic_vae", model_config("basic_vae", prepared), seed=1)
    old.load_state_dict(mlp_alone, strict=True)
    assert not old.code_basis.any() and torch.equal(old.encoder[1].weight, mlp_alone["encoder.1.weight"])


def test_conv_vae_starts_as_its_band_and_time_codes_and_training_keeps_it_level_with_pca(prepared):
    """ConvVAE's split latent (models/linear_code.py): untrained, it reconstructs exactly as its two
    linear codes do; trained, no worse than PCA of its latent size plus a tolerance from the data (the
    spread of PCA's per-track errors); it clusters on the pooled half, which ignores where in a segment
    things happen; and a checkpoint from before the split loads as the pooled network it was."""
    import torch

    from musiclust.models import build_model, config_class
    from musiclust.pipeline import model_config, reconstruction_error, train_model

    model = build_model("conv_vae", model_config("conv_vae", prepared), seed=0)
    assert (model.config.style_dim, model.config.time_dim) == (4, 4)
    model.code.fit([prepared.segments[i] for i in prepared.train_rows], seed=0)
    segs = torch.from_numpy(prepared.segments[prepared.val_rows[0]][:, None])  # (S, 1, n_mels, frames)
    mu = model.posterior_mean({"mel": segs})
    assert torch.allclose(model.reconstruct({"mel": segs}), model.code.decode(mu), atol=1e-5)
    assert torch.allclose(model.embed({"mel": segs}), model.code.band(segs), atol=1e-5)  # untrained: the band code
    # the band code sees each band's level, not when: a segment played backwards has the same one
    assert torch.allclose(model.code.band(segs.flip(3)), model.code.band(segs), atol=1e-4)
    assert not torch.allclose(model.code.time(segs.flip(3)), model.code.time(segs), atol=1e-2)

    pca = prepared.segment_pca()
    pca_error = pca_reconstruction_mse_db(pca, prepared.table, prepared.normalizer, prepared.val_rows, prepared.segments)
    per_track = [reconstruction_mse_db(prepared.table.mels[i], prepared.normalizer.invert(np.concatenate(list(
        pca.reconstruct(prepared.segments[i])), axis=1))) for i in prepared.val_rows]
    trained = train_model("conv_vae", prepared)
    assert reconstruction_error(trained, prepared) <= pca_error + np.std(per_track) / np.sqrt(len(per_track))
    assert trained.model.code.band_basis.any() and trained.model.code.time_basis.any()  # the pipeline fitted them

    saved = {k: v for k, v in model_config("conv_vae", prepared).items()}  # a config from before the split
    old = build_model("conv_vae", config_class("conv_vae").from_saved(saved), seed=1)
    assert old.code is None and old.config.time_dim == 0
    pooled = build_model("conv_vae", {**saved, "time_dim": 0}, seed=2)
    old.load_state_dict(pooled.state_dict(), strict=True)
    assert old.embed({"mel": segs}).shape == (len(segs), 8)


def test_basic_vae_linear_code_from_a_handful_of_segments_stays_in_range_on_other_tracks(prepared):
    """PCA of two tracks' segments has components of variance ~0 (noise); whitening another track by them
    blew its code up (the first run on 8 clips diverged at validation, loss 2e8). Floored, it stays near
    the prior's scale."""
    import torch

    from musiclust.models import build_model
    from musiclust.pipeline import model_config

    few = [prepared.segments[i] for i in prepared.train_rows[:2]]
    pca = SegmentPCA(8, seed=0).fit(few)
    assert pca.variance_.min() < 1e-3  # the degenerate case this guards against
    model = build_model("basic_vae", model_config("basic_vae", prepared), seed=0)
    model.fit_linear_code(pca.mean_, pca.components_, pca.variance_)
    other = torch.from_numpy(prepared.segments[prepared.val_rows[0]][:, None])
    assert float(model.embed({"mel": other}).abs().max()) < 1e3


def test_evaluate_json_carries_pca_reconstruction_error(real_table, prepared):
    from musiclust.analysis.evaluation import evaluate, to_records
    from musiclust.pipeline import Settings

    summary, rows = evaluate(real_table, ["pca_kmeans", "mfcc_kmeans"], Settings(latent_dim=8, seed=0), seeds=1)
    records = {r["model"]: r for r in json.loads(json.dumps(to_records(summary)))}
    pca = SegmentPCA(8, seed=0).fit([prepared.segments[i] for i in prepared.train_rows])
    expected = pca_reconstruction_mse_db(pca, real_table, prepared.normalizer, prepared.val_rows, prepared.segments)
    assert records["pca_kmeans"]["reconstruction_mse_db"] == pytest.approx(expected, rel=1e-6)
    assert records["mfcc_kmeans"].get("reconstruction_mse_db") is None  # MFCC statistics reconstruct nothing


def test_reconstructions_page_shows_the_pca_reference_each_checkpoint_carries(trained_checkpoints, real_music_folder, real_table):
    """A trained model's checkpoint holds the PCA fitted beside it; the page's report reconstructs a
    track with it exactly as a PCA fitted afresh on the same split does, and draws it below the models."""
    from conftest import TRAIN_BRIEFLY
    from musiclust.pipeline import Settings, prepare
    from musiclust.service import Service
    from musiclust.store.table import track_segments

    service = Service(str(real_music_folder), trained_checkpoints)
    name = service.models()[0]
    track = service.track_table(name).iloc[0]
    report = service.reconstruction_report([name], track_id=track["id"])
    ref = report.reference
    assert ref is not None and ref.model == f"PCA, {TRAIN_BRIEFLY['latent_dim']} components" and ref.label is None
    assert report.all_rows == report.rows + [ref] and report.width <= ref.mel_db.shape[1]
    prep = prepare(real_table, Settings(**TRAIN_BRIEFLY))  # the split and seed the models were trained with
    mel = report.original_db
    segs = track_segments(mel, prep.normalizer, real_table.config.segment_frames)
    afresh = prep.normalizer.invert(np.concatenate(list(prep.segment_pca().reconstruct(segs)), axis=1))
    assert ref.mel_db.shape == afresh.shape
    assert ref.mse_db == pytest.approx(reconstruction_mse_db(mel, afresh), rel=1e-4)
    assert np.isfinite(ref.mel_db).all() and ref.mse_db > 0
