"""The trained pipeline end to end on real clips: checkpoints round-trip, placement, reconstruction,
service and CLI contracts."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from musiclust.serving import checkpoint as ckpt
from musiclust.serving.bundle import ModelBundle
from musiclust.store.table import split_by_piece
from musiclust.errors import CheckpointError
from musiclust.features.mel import compute_features
from musiclust.models.registry import MODEL_NAMES
from musiclust.service import Service, morph, sonify

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def service(trained_checkpoints, real_music_folder):
    return Service(str(real_music_folder), trained_checkpoints)


def test_every_model_was_trained_and_saved(service):
    assert service.models() == sorted(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_checkpoint_reload_gives_identical_predictions(service, name, real_clip_paths):
    bundle = service.bundle(name)
    again = ModelBundle.from_checkpoint(ckpt.load(service.root, name))
    feats = compute_features(real_clip_paths[0])
    a, b = bundle.place(feats.mel_db, "Herr Gott"), again.place(feats.mel_db, "Herr Gott")
    assert a.cluster == b.cluster and a.coords == b.coords
    assert [n.id for n in a.neighbours] == [n.id for n in b.neighbours]
    np.testing.assert_array_equal(bundle.reconstruct(feats.mel_db, 0), again.reconstruct(feats.mel_db, 0))


def test_collection_track_lands_on_itself(service):
    bundle = service.bundle("conv_vae")
    track = bundle.tracks[3]
    answer = service.analyse("conv_vae", track["path"])
    assert answer.placement.neighbours[0].id == track["id"]
    assert answer.placement.neighbours[0].distance < 1e-3
    assert answer.placement.cluster == int(bundle.labels[3])
    np.testing.assert_allclose(answer.placement.coords, bundle.coords[3], atol=1e-5)


def test_poe_clusters_by_direction_and_keeps_it_across_a_reload(service):
    """The product of experts is clustered on unit vectors (cosine); the audio-only ConvVAE is not."""
    poe, conv = service.bundle("mvae_poe"), service.bundle("conv_vae")
    np.testing.assert_allclose(np.linalg.norm(poe.space, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(conv.space, axis=1), 1.0, atol=1e-3)
    again = ModelBundle.from_checkpoint(ckpt.load(service.root, "mvae_poe"))
    assert again.scaler.unit_norm and not service.bundle("conv_vae").scaler.unit_norm
    # Directions are taken from the prior's mean 0, not the collection's mean, so a mean shrunk towards
    # the prior (fewer experts, less confidence) keeps its place in the space.
    raw = poe.raw_embedding([compute_features(poe.tracks[0]["path"]).mel_db], [None])  # (1, D)
    np.testing.assert_allclose(again.scaler(0.3 * raw), again.scaler(raw), atol=1e-6)
    row = next(i for i, t in enumerate(poe.tracks) if not t["has_lyrics"])  # same input as at training
    answer = service.analyse("mvae_poe", poe.tracks[row]["path"], None)
    assert answer.placement.neighbours[0].id == poe.tracks[row]["id"]
    assert answer.placement.cluster == int(poe.labels[row])


def test_poe_uses_lyrics_only_when_given(service):
    """Given its own lyrics, a collection track is encoded by both experts as at training and lands on
    itself; without them the audio expert alone places it, away from that point."""
    from pathlib import Path

    poe = service.bundle("mvae_poe")
    row = next(i for i, t in enumerate(poe.tracks) if t["has_lyrics"])
    track = poe.tracks[row]
    lyrics = Path(track["path"]).with_suffix(".txt").read_text(encoding="utf-8")  # what the collection read
    with_lyrics = service.analyse("mvae_poe", track["path"], lyrics)
    without = service.analyse("mvae_poe", track["path"], None)
    assert with_lyrics.placement.used_lyrics and not without.placement.used_lyrics
    assert with_lyrics.placement.neighbours[0].id == track["id"] and with_lyrics.placement.neighbours[0].distance < 1e-4
    assert with_lyrics.placement.cluster == int(poe.labels[row])
    np.testing.assert_allclose(with_lyrics.placement.coords, poe.coords[row], atol=1e-5)
    alone = poe.scaler(poe.raw_embedding([without.features.mel_db], [None]))[0]
    assert np.linalg.norm(alone - poe.space[row]) > 1e-3, "the lyrics changed the answer (by far more than float noise)"
    audio_only = service.bundle("conv_vae").place(without.features.mel_db, lyrics)
    assert not audio_only.used_lyrics, "an audio-only model ignores lyrics"


def test_reconstruction_and_sonification(service, real_clip_paths):
    bundle = service.bundle("beta_cvae")
    mel = compute_features(real_clip_paths[0]).mel_db
    recon = bundle.reconstruct(mel, label=0)
    assert recon.shape[0] == mel.shape[0] and recon.shape[1] == (mel.shape[1] // 128) * 128
    audio = sonify(recon[:, :128], bundle.feature_config, n_iter=4)
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max() > 0.5
    path = morph(bundle, mel, compute_features(real_clip_paths[1]).mel_db, steps=3)
    assert path.shape == (mel.shape[0], 3 * 128)


def test_k_is_given_or_the_groups(real_table):
    """The one place k is chosen: given, else the number of groups (else a sweep: the next test)."""
    from dataclasses import replace

    from musiclust.pipeline import Settings, prepare
    from musiclust.store.table import TrackTable

    assert prepare(real_table, Settings()).k_choice == {"k": len(real_table.label_names()), "source": "groups"}
    assert prepare(real_table, Settings(k=3)).k_choice == {"k": 3, "source": "given"}
    ungrouped = TrackTable([replace(t, group=None) for t in real_table.tracks], real_table.mels, real_table.mfcc_stats,
                           real_table.durations, real_table.config)
    assert prepare(ungrouped, Settings(k=2)).k_choice == {"k": 2, "source": "given"}


def test_split_keeps_pieces_whole(real_table):
    tracks = real_table.tracks
    train, val = split_by_piece(tracks, 0.2, seed=1)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(tracks)
    assert {tracks[i].piece for i in train}.isdisjoint({tracks[i].piece for i in val})


def test_wrong_architecture_checkpoint_is_a_clear_error(service, tmp_path):
    good = ckpt.load(service.root, "conv_vae")
    good.meta["architecture"] = "basic_vae"  # weights of a ConvVAE, claimed to be a BasicVAE
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        ModelBundle.from_checkpoint(good)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "musiclust", *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_cli_predict_json_contract(trained_checkpoints, real_music_folder, real_clip_paths, tmp_path):
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text("Herr Gott dich loben wir")
    out = _cli("predict", str(real_clip_paths[1]), "--lyrics", str(lyrics), "--model", "mvae_poe", "--data", str(real_music_folder), "--checkpoints", str(trained_checkpoints), "--format", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["model"] == "mvae_poe" and isinstance(result["cluster"], int)
    assert len(result["coords"]) == 2 and all(isinstance(c, float) for c in result["coords"])
    assert len(result["neighbours"]) == 5
    assert set(result["neighbours"][0]) == {"id", "title", "distance"}


def test_cli_output_into_a_closed_pipe_ends_quietly(trained_checkpoints, real_music_folder, real_clip_paths):
    """`predict … | head` when the reader has already left: status 1 and no traceback (was: BrokenPipeError).
    The pipe's read end is closed before the command starts, so every write fails, on any machine."""
    read, write = os.pipe()
    os.close(read)
    try:
        out = subprocess.run([sys.executable, "-m", "musiclust", "predict", str(real_clip_paths[1]), "--model", "conv_vae",
                              "--data", str(real_music_folder), "--checkpoints", str(trained_checkpoints)],
                             stdout=write, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=300)
    finally:
        os.close(write)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr, out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("predict", "/nonexistent.wav", "--model", "conv_vae"), "error: "),
        (("predict", "README.md", "--model", "conv_vae"), "error: "),
        (("train", "--models", "nonsense"), "error: unknown model name"),
        (("evaluate", "--data", "/no/such/folder"), "error: music folder not found"),
        (("train", "--epochs", "many"), "error: "),
        (("frobnicate",), "error: "),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, message):
    out = _cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), out.stderr
    assert "Traceback" not in out.stderr


def test_cli_evaluate_json_contract(trained_checkpoints, real_music_folder):
    out = _cli("evaluate", "--data", str(real_music_folder), "--models", "random,mfcc_kmeans,tfidf_kmeans,basic_vae,beta_cvae", "--seeds", "2", "--epochs", "1", "--latent-dim", "8", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = {r["model"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"random", "mfcc_kmeans", "tfidf_kmeans", "basic_vae", "beta_cvae"}
    for row in rows.values():
        for key in ("silhouette", "calinski_harabasz", "davies_bouldin", "ari", "nmi", "purity", "nmi_std", "conditioned_on_label"):
            assert key in row
    assert rows["beta_cvae"]["conditioned_on_label"] is True and rows["basic_vae"]["conditioned_on_label"] is False
    assert rows["mfcc_kmeans"]["nmi"] > rows["random"]["nmi"]


def test_without_groups_or_k_the_sweep_chooses_k_and_is_recorded(real_table):
    """A library without groups and without a given k gets k from a sweep (issue 12 §3), recorded as JSON."""
    import json
    from dataclasses import replace

    from musiclust.pipeline import Settings, prepare

    table = replace(real_table, tracks=[replace(t, group=None) for t in real_table.tracks])
    assert table.label_names() == []
    prep = prepare(table, Settings(seed=0))
    choice = json.loads(json.dumps(prep.k_choice))
    assert choice["source"] == "sweep" and choice["k"] == prep.k == choice["sweep"]["k"]
    assert 2 <= prep.k <= len(table) // 2
    assert [p["k"] for p in choice["sweep"]["curve"]] == list(range(2, len(table) // 2 + 1))
    assert prepare(table, Settings(seed=0)).k_choice == prep.k_choice  # the same seed, the same choice
