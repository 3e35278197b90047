"""The helpers behind the issue #7 scale figures (bench figures 7-9) and the 1M-track projection.

Fast and functional: tiling real latents, replicating a real feature store by hard links (read back
through the same store reader training uses), and the projection's arithmetic on fixed inputs.
Nothing here times anything.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from musiclust.store import shards
from bench import projection, replicas
from bench.common import linear_fit
from musiclust.config import FeatureConfig


# --- tiling latents -----------------------------------------------------------------------------------
def test_tile_rows_keeps_the_originals_and_moves_every_copy_a_little():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, [1.0, 5.0, 0.1], (7, 3)).astype(np.float32)
    out = replicas.tile_rows(x, 20, jitter=0.05, seed=3)
    assert out.shape == (20, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:7], x)  # copy 0 is the real data, untouched
    copies = replicas.copy_number(20, 7)
    assert copies.tolist() == [0] * 7 + [1] * 7 + [2] * 6
    moved = out[7:] - x[np.arange(7, 20) % 7]
    assert np.all(np.abs(moved) > 0)  # no copy equals its original ...
    assert np.all(np.abs(moved) < 0.05 * 6 * x.std(axis=0))  # ... and each moved by ~5 % of its column's spread
    assert len(np.unique(out, axis=0)) == 20
    np.testing.assert_array_equal(out, replicas.tile_rows(x, 20, jitter=0.05, seed=3))  # seeded
    assert not np.array_equal(out, replicas.tile_rows(x, 20, jitter=0.05, seed=4))


def test_tile_rows_keeps_unit_vectors_unit_and_leaves_constant_columns_alone():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out = replicas.tile_rows(x, 23, jitter=0.2, seed=0, unit_norm=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    flat = np.column_stack([rng.normal(size=5), np.full(5, 2.5)]).astype(np.float32)
    assert np.all(replicas.tile_rows(flat, 15, jitter=0.5)[:, 1] == 2.5)
    with pytest.raises(ValueError):
        replicas.tile_rows(np.zeros((0, 3)), 10, jitter=0.1)


def test_tiled_ids_are_unique_and_name_their_original():
    ids = replicas.tiled_ids(["a", "b", "c"], 8)
    assert ids == ["a", "b", "c", "a~1", "b~1", "c~1", "a~2", "b~2"]
    assert len(set(replicas.tiled_ids([f"t{i}" for i in range(490)], 100_000))) == 100_000


@dataclasses.dataclass
class _Scaler:
    unit_norm: bool


@dataclasses.dataclass
class _Index:
    """The fields of a ModelBundle that tile_bundle reads and replaces (the rest are passed through)."""

    space: np.ndarray
    labels: np.ndarray
    coords: np.ndarray
    tracks: list
    scaler: _Scaler
    meta: dict


def test_tile_bundle_grows_the_index_and_keeps_each_copy_in_its_originals_cluster():
    rng = np.random.default_rng(2)
    space = rng.normal(size=(6, 8)).astype(np.float32)
    space /= np.linalg.norm(space, axis=1, keepdims=True)
    small = _Index(space, np.array([0, 1, 2, 0, 1, 2]), rng.normal(size=(6, 2)).astype(np.float32),
                   [{"id": f"t{i}", "title": f"T{i}", "path": f"/m/{i}.wav"} for i in range(6)], _Scaler(True), {"k": 3})
    big = replicas.tile_bundle(small, 50, seed=0)
    assert len(big.tracks) == len(big.space) == len(big.labels) == len(big.coords) == 50
    assert big.labels.tolist() == [0, 1, 2, 0, 1, 2] * 8 + [0, 1]
    assert len({t["id"] for t in big.tracks}) == 50 and big.tracks[6]["title"] == "T0"
    np.testing.assert_allclose(np.linalg.norm(big.space, axis=1), 1.0, rtol=1e-5)  # a by-direction model's space stays unit
    np.testing.assert_array_equal(big.space[:6], space)
    assert big.meta == {"k": 3, "n_tracks": 50, "tiled_from": 6}
    assert len(small.tracks) == 6 and small.meta == {"k": 3}  # the original is not changed
    from musiclust.analysis.clustering import nearest, squared_norms

    idx, _ = nearest(space[4], big.space, 5, sq_norms=squared_norms(big.space))
    assert set(idx.tolist()) <= set(range(4, 50, 6))  # a real track's nearest neighbours are its own copies


# --- replicating a real store -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_store(tmp_path_factory, real_music_folder):
    """4 real clips in 2 shards of 2, written by the Dask task body."""
    from musiclust.data.collection import load_folder
    from musiclust.store.distributed import featurize_partition

    tracks = load_folder(real_music_folder).tracks[:4]
    root = tmp_path_factory.mktemp("base-store")
    cfg = FeatureConfig()
    shards.init_store(root, cfg)
    stamps = [shards.FileStamp.of(t.path) for t in tracks]
    for key, part in shards.partitions(stamps, 2):
        featurize_partition(str(root), cfg.to_dict(), key, [(s.path, s.size, s.mtime_ns) for s in part])
    return root, tracks


def test_a_replicated_store_reads_back_as_distinct_tracks_with_the_real_frames(small_store, tmp_path):
    from musiclust.data.collection import Collection
    from musiclust.store.stored_table import table_from_store

    base_root, tracks = small_store
    dst = tmp_path / "big"
    assert replicas.replicate_store(base_root, dst, 3) == 12
    _, catalog = shards.open_store(dst)
    assert not catalog.damaged and len(catalog.shards) == 6 and len(catalog.where) == 12
    assert {str(t.path) for t in tracks} < set(catalog.where)  # copy 0 keeps the real paths
    base_mels = [s / "mel.npy" for s in shards.iter_shard_dirs(base_root)]
    for d in shards.iter_shard_dirs(dst):  # arrays are hard links: the disk holds the frames once
        assert any(os.path.samefile(d / "mel.npy", b) for b in base_mels)
    assert replicas.store_bytes(dst) < 1.1 * replicas.store_bytes(base_root)
    table = table_from_store(Collection("replicated", replicas.replicated_tracks(tracks, 3)), dst)
    assert len(table) == 12 and not table.skipped
    assert len(set(table.ids)) == 12 and len({t.piece for t in table.tracks}) == 12
    for i in range(12):
        np.testing.assert_array_equal(table.mels[i], table.mels[i % 4])
    np.testing.assert_array_equal(table.mfcc_stats[8:], table.mfcc_stats[:4])


def test_copy_paths_keep_the_file_name_and_copy_zero_is_the_real_path():
    assert replicas.copy_path("/music/a/x.wav", 0) == "/music/a/x.wav"
    assert replicas.copy_path("/music/a/x.wav", 12) == "/music/a/copy-00012/x.wav"


# --- the projection's arithmetic ----------------------------------------------------------------------
MEASURED = {
    "feature_ms_per_track": 36.0, "parallel_efficiency": 0.9, "feature_ms_per_track_unset_malloc": 18.0,
    "worker_peak_rss_mb": 210.0, "worker_peak_rss_mb_by_n": {500: 205.0, 2000: 210.0},
    "store_mb_per_track": 0.64, "client_mb_per_track": 0.01, "client_peak_rss_mb": 100.0, "client_n": 2000,
    "index_n": 100_000, "latent_dim": 32, "minibatch_s": 2.0, "index_step_mb_per_track": 0.002,
    "umap_fit_s": 30.0, "umap_fit_tracks": 20_000, "umap_transform_ms_per_track": 1.5,
    "upload_p50_s_small": 0.030, "upload_p50_s_big": 0.033, "place_ms_per_track": 3e-5, "serving_mb_per_track": 0.001,
    "train_peak_mb": 900.0, "train_n": 100_000, "train_mb_per_track": 0.004,
}


def test_projection_scales_the_measured_costs_with_the_arithmetic_shown():
    p = projection.project(MEASURED, tracks=1_000_000, workers=20)
    assert p["featurize_wall_h_ideal"]["value"] == pytest.approx(1e6 * 0.036 / 20 / 3600)  # 0.5 h
    assert p["featurize_wall_h_measured_efficiency"]["value"] == pytest.approx(0.5 / 0.9)
    assert p["featurize_wall_h_unset_malloc"]["value"] == pytest.approx(0.25)
    assert p["memory_per_worker_mb"]["value"] == 210.0
    assert p["client_memory_mb"]["value"] == pytest.approx(100.0 + 0.01 * 998_000)
    assert p["store_gb"]["value"] == pytest.approx(640_000 / 1024)
    assert p["store_write_mb_s"]["value"] == pytest.approx(640_000 / (0.5 / 0.9 * 3600))
    assert p["cluster_s"]["value"] == pytest.approx(20.0)
    assert p["map_s"]["value"] == pytest.approx(30.0 + 1.5 * 980_000 / 1000)
    assert p["latents_mb"]["value"] == pytest.approx(1e6 * 32 * 4 / 2**20)
    assert p["upload_p50_ms"]["value"] == pytest.approx(30.0 + 3e-5 * 1e6)
    assert p["serving_index_mb"]["value"] == pytest.approx(1000.0)
    assert p["train_peak_mb"]["value"] == pytest.approx(900.0 + 0.004 * 900_000)
    assert "1,000,000 tracks x 36 ms / 20 workers = 0.5 h" in p["featurize_wall_h_ideal"]["arithmetic"]
    assert all(": " in line for line in projection.lines(p))


def test_projection_leaves_out_what_was_not_measured():
    p = projection.project({"store_mb_per_track": 0.5}, tracks=1000, workers=2)
    assert set(k for k, v in p.items() if isinstance(v, dict) and "value" in v) == {"store_gb"}
    assert projection.maybe_project({}) is None
    assert projection.maybe_project({"dask": {"error": "RuntimeError: boom"}}) is None


def test_measured_costs_reads_the_figures_of_a_run():
    figures = {
        "dask": {
            "rows": [
                {"n": 500, "workers": 1, "ms_per_track": 40.0, "worker_peak_rss_mb": 200.0, "store_mb_per_track": 0.63, "client_peak_rss_mb": 100.0},
                {"n": 500, "workers": 2, "ms_per_track": 21.0, "worker_peak_rss_mb": 205.0, "store_mb_per_track": 0.63, "client_peak_rss_mb": 101.0},
                {"n": 2000, "workers": 1, "ms_per_track": 38.0, "worker_peak_rss_mb": 201.0, "store_mb_per_track": 0.64, "client_peak_rss_mb": 115.0},
                {"n": 2000, "workers": 2, "ms_per_track": 20.0, "worker_peak_rss_mb": 206.0, "store_mb_per_track": 0.64, "client_peak_rss_mb": 116.0},
            ],
            "linear_fit": {"1": {"ms_per_track": 37.5}},
            "ratios": {"speedup_2_vs_1_workers": {"500": 1.9, "2000": 1.9}},
            "malloc_variant": [{"workers": 1, "ms_per_track": 19.0}],
        },
    }
    m = projection.measured_costs(figures)
    assert m["feature_ms_per_track"] == 38.0 and m["parallel_efficiency"] == pytest.approx(0.95)  # largest N, 1 worker
    assert m["feature_ms_per_track_unset_malloc"] == 19.0 and m["worker_peak_rss_mb"] == 206.0
    assert m["client_mb_per_track"] == pytest.approx(15.0 / 1500) and m["store_mb_per_track"] == 0.64
    assert m["worker_peak_rss_mb_by_n"] == {500: 200.0, 2000: 201.0}


def test_a_growth_that_fell_between_two_sizes_projects_as_no_growth():
    """Quick-mode sizes (200 vs 400 tracks) can sample a lower peak at the larger size: that is noise,
    and the projection must not subtract memory per track."""
    figures = {"stream": {"rows": [{"n": 200, "peak_rss_mb": 560.0}, {"n": 400, "peak_rss_mb": 540.0}], "peak_mb_per_1k_tracks": -100.0}}
    m = projection.measured_costs(figures)
    assert m["train_mb_per_track"] == 0.0
    p = projection.project(m)
    assert p["train_peak_mb"]["value"] == 540.0
    figures["stream"]["peak_mb_per_1k_tracks"] = 10.0
    assert projection.project(projection.measured_costs(figures))["train_peak_mb"]["value"] == pytest.approx(540.0 + 10.0 * 999.6)


def test_linear_fit_recovers_fixed_and_per_track_cost():
    fit = linear_fit([500, 1000, 2000], [2.0 + 0.04 * n for n in (500, 1000, 2000)])
    assert fit["fixed_s"] == pytest.approx(2.0) and fit["ms_per_track"] == pytest.approx(40.0)
    assert fit["marginal_ms_per_track"] == pytest.approx([40.0, 40.0]) and fit["max_relative_residual"] < 1e-9
    assert linear_fit([500], [3.0]) is None
