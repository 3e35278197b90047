"""Featurization on dask.distributed into the sharded store, and training from that store.

Real clips only (the 20 rendered 8 s corpus clips of conftest). Clusters are LocalClusters of 2 worker
processes with one thread each, as ``python -m musiclust features`` starts them; partitions are tiny so
that 20 clips make several tasks and shards. Nothing here asserts a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from musiclust.store import shards, stored_table, streaming
from musiclust.config import FeatureConfig
from musiclust.store.distributed import featurize_to_store
from musiclust.features.mel import compute_features

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def store_tracks(root: Path) -> list[str]:
    """Every track path of every shard, duplicates kept (so 'exactly once' can be checked)."""
    _, catalog = shards.open_store(root)
    assert not catalog.damaged, catalog.damaged
    return [t["path"] for s in catalog.shards for t in s.tracks]


def assert_whole(root: Path) -> None:
    """Every shard opens and is consistent; no temporary directory is left behind."""
    for d in shards.iter_shard_dirs(root):
        shard = shards.Shard(d, FeatureConfig().n_mels)  # raises DataError on any inconsistency
        for row in range(len(shard)):
            assert np.isfinite(shard.mel_db(row)).all()
    assert not [p.name for p in root.iterdir() if p.name.startswith(shards.TMP_PREFIX)]


@pytest.fixture(scope="module")
def two_worker_store(client, real_clip_paths, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    report = featurize_to_store(real_clip_paths, root, client=client, partition_size=3, log=lambda m: None)
    return root, report


def test_two_worker_cluster_computes_the_serial_features(two_worker_store, real_clip_paths):
    root, report = two_worker_store
    assert report.featurized == len(real_clip_paths) and not report.failed and not report.lost_partitions
    assert report.shards_written == -(-len(real_clip_paths) // 3)
    workers = {s["worker"] for s in report.summaries}
    assert len(workers) == 2, workers  # both worker processes did some of it
    _, catalog = shards.open_store(root)
    for path in real_clip_paths:
        s, r = catalog.where[str(path)]
        shard = catalog.shards[s]
        serial = compute_features(path)
        np.testing.assert_allclose(shard.mel_db(r), serial.mel_db, rtol=0, atol=1e-4)
        np.testing.assert_allclose(shard.mfcc[r], serial.mfcc_stats, rtol=1e-5, atol=1e-4)
        assert shard.durations[r] == pytest.approx(serial.duration)
        assert shard.tracks[r]["sha256"] == __import__("musiclust.features.mel", fromlist=["x"]).content_hash(path)
    assert_whole(root)


def test_a_second_run_featurizes_nothing_and_a_lost_shard_is_redone_under_its_own_key(two_worker_store, client, real_clip_paths):
    root, _ = two_worker_store
    before = sorted(p.name for p in shards.iter_shard_dirs(root))
    again = featurize_to_store(real_clip_paths, root, client=client, partition_size=3, log=lambda m: None)
    assert again.featurized == 0 and again.already == len(real_clip_paths) and again.shards_written == 0
    assert sorted(p.name for p in shards.iter_shard_dirs(root)) == before
    # lose one shard in the middle: only its tracks are redone, into a shard of the same name
    lost = root / before[len(before) // 2]
    lost_paths = {t["path"] for t in json.loads((lost / "index.json").read_text())["tracks"]}
    shutil.rmtree(lost)
    redo = featurize_to_store(real_clip_paths, root, client=client, partition_size=3, log=lambda m: None)
    assert redo.featurized == len(lost_paths) and redo.shards_written == 1
    assert sorted(p.name for p in shards.iter_shard_dirs(root)) == before
    assert sorted(store_tracks(root)) == sorted(str(p) for p in real_clip_paths)


def test_a_bad_file_is_recorded_in_its_shard_and_the_run_goes_on(client, real_music_folder, tmp_path):
    folder = tmp_path / "music"
    shutil.copytree(real_music_folder, folder)
    bad = folder / "bach_chorale" / "not-audio.wav"
    bad.write_text("<html>this is not a wav file</html>\n" * 50)
    paths = sorted(folder.rglob("*.wav"))
    root = tmp_path / "store"
    report = featurize_to_store(paths, root, client=client, partition_size=4, log=lambda m: None)
    assert set(report.failed) == {str(bad)} and "not audio" in report.failed[str(bad)]
    assert report.featurized == len(paths) - 1 and not report.lost_partitions
    recorded = [json.loads((d / "failed.json").read_text()) for d in shards.iter_shard_dirs(root)]
    holders = [r for r in recorded if str(bad) in r]
    assert len(holders) == 1 and holders[0][str(bad)]["size"] == bad.stat().st_size
    assert str(bad) not in store_tracks(root)
    # an unchanged bad file is not retried; the table built from the store skips it with its reason
    again = featurize_to_store(paths, root, client=client, partition_size=4, log=lambda m: None)
    assert again.featurized == 0 and again.already == len(paths)
    from musiclust.data.collection import load_folder

    table = stored_table.table_from_store(load_folder(folder), root)
    assert len(table) == len(paths) - 1 and "not audio" in table.skipped[str(bad)]


def test_killing_a_worker_mid_run_still_finishes_with_every_shard_whole_and_every_track_once(real_clip_paths, tmp_path):
    """SIGKILL one of two worker processes while it is running a task: Dask reruns the lost task on the
    other worker (or the nanny's replacement), and the store ends whole, every track in it exactly once."""
    from dask.distributed import Client, LocalCluster

    paths = list(real_clip_paths) * 1  # 20 clips; partition size 1 makes 20 tasks of ~50-100 ms
    killed = {}

    def kill_one_busy_worker(client, futures):
        pids = client.run(os.getpid)  # worker address -> pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = {w: tasks for w, tasks in client.processing().items() if tasks}
            if len(busy) == 2:  # both have started work: kill the one that is not listed first
                victim = sorted(busy)[1]
                killed.update(worker=victim, pid=pids[victim], tasks=list(busy[victim]))
                os.kill(pids[victim], signal.SIGKILL)
                return
            time.sleep(0.005)
        raise AssertionError("the workers never both started work")

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        root = tmp_path / "store"
        report = featurize_to_store(paths, root, client=client, partition_size=1, log=lambda m: None,
                                    on_submitted=kill_one_busy_worker)
    finally:
        client.close()
        cluster.close()
    assert killed and killed["tasks"], "no worker was killed while it had a task"
    with pytest.raises(ProcessLookupError):
        os.kill(killed["pid"], 0)  # it really died
    assert not report.lost_partitions and not report.failed
    assert report.featurized == len(paths) and report.shards_written == len(paths)
    assert sorted(store_tracks(root)) == sorted(str(p) for p in paths)  # exactly once each
    assert_whole(root)


def run_cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiclust", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_cli_features_on_a_folder_then_nothing_to_do(real_music_folder, tmp_path):
    store = tmp_path / "store"
    proc = run_cli("features", "--data", str(real_music_folder), "--store", str(store), "--workers", "2", "--partition-size", "6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "20 track(s) featurized into 4 shard(s), 0 failed" in proc.stderr
    assert len(store_tracks(store)) == 20
    again = run_cli("features", "--data", str(real_music_folder), "--store", str(store), "--workers", "2")
    assert again.returncode == 0 and "nothing to do: 20 track(s) already" in again.stderr


@pytest.mark.parametrize("args", [
    ("--data", "/no/such/music/folder"),
    ("--data", "{folder}", "--partition-size", "0"),
    ("--data", "{folder}", "--workers", "0"),
])
def test_cli_bad_input_exits_2_with_one_error_line(args, real_music_folder, tmp_path):
    args = [a.replace("{folder}", str(real_music_folder)) for a in args]
    proc = run_cli("features", *args, "--store", str(tmp_path / "store"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr


def test_streaming_training_from_the_store_learns_and_matches_the_in_memory_run(two_worker_store, real_music_folder, real_clip_paths):
    """The fit loop on store-backed, lazily read segments: the loss falls, and with the same normaliser
    the run is bit-identical to the in-memory one (same batches, same weights)."""
    from musiclust.data.collection import load_folder
    from musiclust.store.table import MelNormalizer, track_segments
    from musiclust.models import build_model
    from musiclust.models.training import SegmentData, TrainConfig, fit

    root, _ = two_worker_store
    # the conftest folder holds copies of the same clips: map them onto the stored paths by name
    by_name = {p.name: str(p) for p in real_clip_paths}
    collection = load_folder(real_music_folder)
    collection.tracks = [dataclasses.replace(t, path=Path(by_name[t.path.name])) for t in collection.tracks]
    table = stored_table.table_from_store(collection, root)
    assert streaming.is_lazy(table) and len(table) == 20
    rows = np.arange(len(table))
    in_memory_mels = [compute_features(t.path).mel_db for t in table.tracks]
    reference = MelNormalizer.fit(in_memory_mels)
    normalizer = streaming.fit_normalizer(table.mels, rows)
    np.testing.assert_allclose(normalizer.mean, reference.mean, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(normalizer.std, reference.std, rtol=1e-5)

    frames = table.config.segment_frames
    lazy = streaming.LazySegments(table.mels, reference, frames)
    eager = [track_segments(m, reference, frames) for m in in_memory_mels]
    assert [len(s) for s in lazy] == [len(s) for s in eager]
    np.testing.assert_array_equal(np.asarray(lazy[3]), eager[3])

    config = TrainConfig(epochs=4, batch_size=16, seed=0, patience=10)
    histories = []
    for segs in (lazy, eager):
        model = build_model("conv_vae", {"latent_dim": 8, "n_mels": 128, "frames": frames, "time_dim": 0}, seed=0)  # pooled: a test of the store
        histories.append(fit(model, SegmentData(mel_segments=segs), config=config).history)
    streamed, in_memory = histories
    losses = [row["train_loss"] for row in streamed]
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.9 * losses[0], losses  # it learns
    assert [r["train_loss"] for r in streamed] == [r["train_loss"] for r in in_memory]  # bit-identical
