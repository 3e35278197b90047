"""The fit loop: reproducible, early-stopped, cancellable, and it refuses to keep a diverged model."""

import numpy as np
import pytest
import torch

from musiclust.errors import DataError, ParameterError, TrainingCancelled, TrainingError
from musiclust.models import build_model
from musiclust.models.training import FitResult, SegmentData, TrainConfig, evaluate, fit

SR = 22050
VOCAB = 30
# One thread: small batches gain nothing from two, and two collapse when the machine is busy.
FAST = dict(epochs=3, batch_size=16, segments_per_track_per_epoch=2, beta_warmup_epochs=1, num_threads=1)


@pytest.fixture(scope="module")
def splits(real_segments):
    """(train, val) SegmentData: 9 + 3 tracks, lyrics on two thirds of them, labels."""
    rng = np.random.default_rng(2)
    segments, labels = real_segments["segments"], real_segments["labels"]
    lyrics = np.zeros((len(labels), VOCAB), np.float32)
    for i, g in enumerate(labels):
        lyrics[i, rng.choice(np.arange(g * 10, g * 10 + 10), 4, replace=False)] = 1.0
    lyrics /= np.linalg.norm(lyrics, axis=1, keepdims=True)
    has = np.arange(len(labels)) % 3 != 0
    lyrics[~has] = 0.0
    val = np.array([3, 7, 11])
    train = np.setdiff1d(np.arange(len(labels)), val)

    def part(rows):
        return SegmentData([segments[i] for i in rows], lyrics[rows], has[rows], labels[rows])

    return part(train), part(val)


def weights(model):
    return [t.clone() for t in model.state_dict().values()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name, extra", [("conv_vae", {}), ("mvae_poe", {"lyrics_dim": VOCAB}), ("beta_cvae", {"n_labels": 3})])
def test_same_seed_gives_identical_weights(name, extra, splits):
    train, val = splits
    runs = []
    for seed in (5, 5, 6):
        model = build_model(name, extra, seed=0)
        fit(model, train, val, TrainConfig(seed=seed, **FAST))
        runs.append(weights(model))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


def test_history_progress_and_best_weights_restored(splits):
    train, val = splits
    model = build_model("conv_vae", {}, seed=0)
    calls = []
    result = fit(
        model, train, val, TrainConfig(**dict(FAST, epochs=5), patience=2), progress=lambda *a: calls.append(a)
    )
    assert isinstance(result, FitResult) and result.seconds > 0
    assert [c[0] for c in calls] == [row["epoch"] for row in result.history] == list(range(1, len(calls) + 1))
    assert all(c[1] == 5 and "train_loss" in c[2] and "val_kl" in c[2] for c in calls)
    assert [c[3] for c in calls] == sorted(c[3] for c in calls)
    val_losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == 1 + int(np.argmin(val_losses))
    assert evaluate(model, val)["loss"] == pytest.approx(min(val_losses), rel=1e-6)  # best weights are back
    if result.stopped_early:
        assert len(result.history) == result.best_epoch + 2
    assert result.history[-1]["kl_weight"] == 1.0


def test_loss_falls_over_a_short_run(splits):
    train, val = splits
    model = build_model("mvae_poe", {"lyrics_dim": VOCAB}, seed=0)
    result = fit(model, train, val, TrainConfig(**dict(FAST, epochs=6)))
    first, best = result.history[0], result.history[result.best_epoch - 1]
    assert best["val_loss"] < first["val_loss"]
    assert "train_recon_lyrics" in first


def test_nan_in_data_aborts_and_keeps_previous_weights(real_segments):
    segments = [s.copy() for s in real_segments["segments"]]
    for s in segments:
        s[:, 5, 7] = np.nan  # every segment, so the first batch meets it
    model = build_model("conv_vae", {}, seed=0)
    before = weights(model)
    with pytest.raises(TrainingError, match=r"conv_vae diverged in epoch 1: the training loss term 'recon_audio'"):
        fit(model, SegmentData(segments), None, TrainConfig(**FAST))
    assert same(before, weights(model))


def test_exploding_loss_aborts(splits):
    train, _ = splits
    model = build_model("basic_vae", {}, seed=0)
    with pytest.raises(TrainingError, match="exploded"):
        fit(model, train, None, TrainConfig(**FAST, max_loss=10.0))


def test_cancel_stops_at_the_next_batch_and_keeps_previous_weights(splits):
    train, val = splits
    model = build_model("conv_vae", {}, seed=0)
    before = weights(model)
    checks = []

    def should_stop():
        checks.append(1)
        return len(checks) >= 3

    with pytest.raises(TrainingCancelled, match="cancelled"):
        fit(model, train, val, TrainConfig(**FAST), should_stop=should_stop)
    assert len(checks) == 3
    assert same(before, weights(model))


def test_fit_leaves_global_torch_state_alone(splits):
    train, _ = splits
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    fit(build_model("conv_vae", {}, seed=0), train, None, TrainConfig(**dict(FAST, epochs=1)))  # 1 thread
    assert torch.get_num_threads() == threads
    assert torch.equal(rng, torch.random.get_rng_state())
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_incompatible_data_is_refused(splits, real_segments):
    train, _ = splits
    unlabelled = SegmentData(train.mel_segments)
    with pytest.raises(ParameterError, match="labels"):
        fit(build_model("beta_cvae", {"n_labels": 3}), unlabelled, None, TrainConfig(**FAST))
    with pytest.raises(ParameterError, match="lyrics"):
        fit(build_model("mvae_poe", {"lyrics_dim": VOCAB + 1}), train, None, TrainConfig(**FAST))
    with pytest.raises(ParameterError, match="segments"):
        fit(build_model("conv_vae", {"frames": 64}), train, None, TrainConfig(**FAST))
    with pytest.raises(DataError):
        SegmentData([np.zeros((2, 128, 128), np.float32), np.zeros((2, 128, 64), np.float32)])
    with pytest.raises(DataError, match="no lyrics"):
        SegmentData(real_segments["segments"][:2], has_lyrics=np.array([True, False]))
    with pytest.raises(ParameterError, match="epochs"):
        TrainConfig(epochs=0)
