"""The upload answer's Vega-Lite charts (musiclust.serving.vega): the map with its star, a large map's sample
over the density of every track, and the spectrogram image the right way up."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest

from musiclust.config import FeatureConfig
from musiclust.features.mel import compute_features
from musiclust.serving.figures import MAP_MAX_POINTS
from musiclust.serving.vega import group_mix_spec, mel_image_spec, mel_png, upload_map_spec, with_upload


def collection(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"t{i}" for i in range(n)], "title": [f"<b>title {i}</b>" for i in range(n)], "artist": "someone",
        "group": rng.choice(["a", "b", "c"], n), "cluster": rng.integers(0, 5, n),
        "x": rng.normal(size=n).astype(np.float32), "y": rng.normal(size=n).astype(np.float32),
    })


def test_the_star_is_added_to_a_shared_map_without_changing_it():
    frame = collection(300)
    base = upload_map_spec(frame)
    before = json.dumps(base)
    answer = with_upload(base, (0.25, -1.5), "my song.mp3")
    assert json.dumps(base) == before, "the cached map is never changed"
    (points,) = base["layer"]
    assert len(points["data"]["values"]) == 300 and "title" not in base, "every track a point, no sample note"
    assert points["encoding"]["color"]["scale"]["domain"] == sorted(frame["cluster"].unique().tolist())
    star = answer["layer"][-1]["data"]["values"][0]
    assert (star["x"], star["y"], star["label"]) == (0.25, -1.5, "my song.mp3")
    json.dumps(answer)  # plain JSON: numpy scalars converted


def test_a_large_map_draws_a_sample_over_the_density_of_every_track():
    n = MAP_MAX_POINTS + 2_000
    frame = collection(n)
    spec = upload_map_spec(frame)
    density, points = spec["layer"]
    assert len(points["data"]["values"]) == MAP_MAX_POINTS
    assert set(points["data"]["values"][0]) == {"x", "y", "cluster", "title"}, "the sample's tooltips: title only"
    assert sum(cell["tracks"] for cell in density["data"]["values"]) == n, "the density counts every track"
    assert f"{n:,}" in spec["title"]["text"]


def test_group_mix_keeps_the_largest_groups_in_order():
    spec = group_mix_spec({"fiddle_tune": 9, "chorale": 4, "unknown": 1}, top=2)
    assert spec["data"]["values"] == [{"group": "fiddle_tune", "tracks": 9}, {"group": "chorale", "tracks": 4}]


def test_the_spectrogram_image_is_the_mel_with_low_bands_at_the_bottom(real_clip_paths):
    config = FeatureConfig()
    mel = compute_features(real_clip_paths[0], config).mel_db  # (n_mels, T), a real recording
    from PIL import Image

    lo, hi = float(np.percentile(mel, 0.5)), float(np.percentile(mel, 99.9))
    image = np.asarray(Image.open(io.BytesIO(mel_png(mel, lo, hi))).convert("L"), dtype=np.float64)  # (n_mels, T)
    assert image.shape == mel.shape
    # magma grows brighter with level: the image's rows, bottom up, rank as the bands' levels do
    bands = np.clip(mel, lo, hi).mean(axis=1)
    rows = image[::-1].mean(axis=1)
    assert np.corrcoef(bands, rows)[0, 1] > 0.9
    spec = mel_image_spec(mel, config)
    url = spec["layer"][0]["data"]["values"][0]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == mel_png(mel, lo, hi)
    assert spec["layer"][0]["data"]["values"][0]["x2"] == pytest.approx(mel.shape[1] * config.hop_length / config.sample_rate)
