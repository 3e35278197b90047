"""The default data set on real material: the committed manifest, its rule, and rendering real rows."""

from __future__ import annotations

import collections
import csv
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from musiclust.data import corpus
from musiclust.data.corpus import manifest as corpus_manifest
from musiclust.data.corpus import render as corpus_render
from musiclust.data.corpus import scores as corpus_scores
from musiclust.errors import AudioError, DataError, ParameterError

SR = corpus.SAMPLE_RATE
SHORT = 3.0  # seconds rendered per test clip, for speed


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return corpus.read_manifest(corpus.DEFAULT_MANIFEST)


@pytest.fixture(scope="module")
def by_id(rows) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


def _short(row: dict, seconds: float = SHORT) -> dict:
    return {**row, "duration_s": seconds}


def _read(path: Path) -> tuple[np.ndarray, int]:
    audio, sr = soundfile.read(str(path), dtype="float32")
    return audio, sr


# --- the committed manifest ----------------------------------------------------------------------


def test_manifest_columns_and_group_sizes(rows):
    with open(corpus.DEFAULT_MANIFEST, newline="", encoding="utf-8") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == corpus.MANIFEST_COLUMNS
    sizes = collections.Counter(r["group"] for r in rows)
    assert set(sizes) == {g.name for g in corpus.GROUPS}
    assert len(sizes) >= 6
    assert all(50 <= n <= 80 for n in sizes.values()), sizes
    assert 400 <= len(rows) <= 600


def test_manifest_rows_are_consistent(rows):
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    for r in rows:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", r["id"])
        assert r["id"].startswith(r["group"] + "-") and r["id"].startswith(r["piece_id"])
        assert r["duration_s"] == corpus.CLIP_SECONDS  # one length for all: duration is no group cue
        assert not Path(r["corpus_path"]).is_absolute() and (corpus.corpus_root() / r["corpus_path"]).is_file()
        assert bool(r["lyrics"]) == bool(r["lyrics_language"])
        assert r["lyrics"].lower() not in ("none", "n/a", "instrumental", "-")
        assert r["instrumentation"] and all(0 <= int(p) <= 127 for p in r["instrumentation"].split(";"))
        assert (r["number"] is not None) == (r["group"] == "german_folk")
    assert not any(r["corpus_path"].startswith("mozart/k545") for r in rows)
    assert not any(r["corpus_path"].endswith(".rntxt") for r in rows)


def test_clips_of_one_piece_share_it_and_do_not_overlap(rows):
    pieces = collections.defaultdict(list)
    for r in rows:
        pieces[r["piece_id"]].append(r)
    for clips in pieces.values():
        assert len({(c["corpus_path"], c["number"]) for c in clips}) == 1
        starts = sorted(c["offset_s"] for c in clips)
        assert starts[0] == 0.0
        assert all(b - a >= corpus.CLIP_SECONDS for a, b in zip(starts, starts[1:]))


def test_selection_order_is_deterministic_and_complete():
    for group in ("bach_chorale", "german_folk", "string_quartet"):
        first, second = corpus.selection_order(group), corpus.selection_order(group)
        assert first == second
        assert sorted(first, key=lambda c: (c.corpus_path, c.number or 0)) == corpus.list_candidates(group)
    assert corpus.selection_order("bach_chorale") != corpus.list_candidates("bach_chorale")  # it is shuffled


@pytest.mark.parametrize("group", ["bach_chorale", "german_folk", "fiddle_tune", "palestrina"])
def test_rule_reproduces_committed_rows(group, by_id):
    """Re-running the rule (first few picks) yields exactly the committed rows, lyrics included."""
    skipped: dict[str, str] = {}
    fresh = corpus.build_group_rows(group, per_group=4, skipped=skipped)
    assert len(fresh) == 4
    for row in fresh:
        committed = by_id[row["id"]]
        assert {k: committed[k] for k in corpus.MANIFEST_COLUMNS} == {
            **{k: corpus_manifest._format_cell(row[k]) for k in corpus.MANIFEST_COLUMNS},
            "number": row["number"],
            "offset_s": row["offset_s"],
            "duration_s": row["duration_s"],
        }


def test_lyrics_come_from_the_scores(by_id, rows):
    chorale = by_id["bach_chorale-bwv148_6"]
    assert chorale["lyrics"].startswith("Wo soll ich fliehen hin") and chorale["lyrics_language"] == "de"
    with_text = collections.Counter(r["group"] for r in rows if r["lyrics"])
    assert with_text["bach_chorale"] >= 60 and with_text["monteverdi"] >= 60 and with_text["trecento"] >= 50
    assert {r["lyrics_language"] for r in rows if r["group"] == "trecento" and r["lyrics"]} == {"la", "it"}


def test_instrumentation_is_explicit_per_group(rows):
    natural = {r["group"]: set(r["instrumentation"].split(";")) for r in rows}
    assert natural["string_quartet"] == {"40", "41", "42"}
    assert natural["fiddle_tune"] == {"40"}
    assert natural["bach_chorale"] == {"52"}


# --- rendering real rows --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sf2() -> Path:
    return corpus.find_soundfont()


def test_render_real_rows_short(tmp_path, by_id, sf2):
    chorale = _short(by_id["bach_chorale-bwv148_6"])
    quartet_middle = _short(by_id["string_quartet-haydn-opus74no1-movement1-t155"])
    outputs = {}
    for row, variant in ((chorale, "natural"), (chorale, "piano"), (quartet_middle, "natural")):
        out = tmp_path / variant / f"{row['id']}.wav"
        outcome = corpus.render_clip(row, variant, sf2, out, timeout_s=60)
        assert outcome.id == row["id"] and not outcome.reason
        audio, sr = _read(out)
        assert sr == SR and audio.ndim == 1 and audio.dtype == np.float32
        assert audio.size == int(SHORT * SR)
        assert abs(float(np.abs(audio).max()) - 10 ** (corpus.PEAK_DBFS / 20)) < 1e-3
        assert float(np.sqrt(np.mean(audio**2))) > 0.02  # real music, not silence
        outputs[(row["id"], variant)] = audio
    # the piano variant really changes the timbre, not the notes' timing
    assert not np.allclose(outputs[(chorale["id"], "natural")], outputs[(chorale["id"], "piano")], atol=1e-2)
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_full_row_reproduces_recorded_duration(tmp_path, by_id, sf2):
    row = by_id["fiddle_tune-AmazonHornpipe"]
    out = tmp_path / "clip.wav"
    corpus.render_clip(row, "piano", sf2, out)
    assert soundfile.info(str(out)).frames == int(round(row["duration_s"] * SR))


def test_short_piece_is_played_twice(by_id):
    row = by_id["fiddle_tune-OldBachelorsReel"]  # a 15.5 s reel
    length = corpus_scores._read_score(corpus_scores._load_score(row["corpus_path"], row["number"]))[1]
    assert corpus.MIN_PIECE_SECONDS <= length < corpus.CLIP_SECONDS
    (events,) = corpus.clip_events(row)
    first_pass = [e for e in events if e[1] < length - 1e-6]
    second_pass = [e for e in events if e[1] >= length - 1e-6]
    assert second_pass and second_pass[0][1] == pytest.approx(length, abs=1e-3)
    assert [p for p, _, _ in second_pass] == [p for p, _, _ in first_pass][: len(second_pass)]
    assert max(e[2] for e in events) <= corpus.CLIP_SECONDS


def test_timeout_kills_the_render(tmp_path, by_id, sf2):
    row = _short(by_id["string_quartet-beethoven-opus132-t913"])  # parsing alone takes seconds
    out = tmp_path / "slow.wav"
    with pytest.raises(AudioError, match="timed out"):
        corpus.render_clip(row, "natural", sf2, out, timeout_s=0.3)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_size_cap_refuses_and_the_child_cannot_exceed_it(tmp_path, by_id, sf2):
    row = _short(by_id["fiddle_tune-AmazonHornpipe"])
    out = tmp_path / "big.wav"
    with pytest.raises(AudioError, match="cap"):
        corpus.render_clip(row, "piano", sf2, out, max_bytes=50_000)
    assert not out.exists()
    # The in-process cap (RLIMIT_FSIZE) holds even if the up-front check were wrong.
    tmp = tmp_path / "raw.wav"
    with pytest.raises(AudioError, match="size cap"):
        corpus_render._run_isolated(corpus_render._ClipJob(corpus_manifest._typed_row(row), "piano", sf2, tmp, 20_000, None), 60.0)
    assert not tmp.exists() or tmp.stat().st_size <= 20_000


def test_bad_inputs_are_refused(tmp_path, by_id, sf2, monkeypatch):
    row = _short(by_id["fiddle_tune-AmazonHornpipe"])
    with pytest.raises(ParameterError):
        corpus.render_clip(row, "organ", sf2, tmp_path / "x.wav")
    with pytest.raises(DataError):
        corpus.render_clip({**row, "duration_s": 31}, "piano", sf2, tmp_path / "x.wav")
    with pytest.raises(AudioError, match="cannot parse|not found"):
        corpus.render_clip({**row, "corpus_path": "bach/no_such_file.mxl"}, "piano", sf2, tmp_path / "x.wav")
    monkeypatch.setattr(corpus_render, "SOUNDFONT_CANDIDATES", (tmp_path / "none.sf2",))
    with pytest.raises(DataError, match="fluid-soundfont-gm"):
        corpus.find_soundfont()


# --- building a set -------------------------------------------------------------------------------


def test_build_default_set_parallel_skip_and_failures(tmp_path, by_id, sf2):
    picked = [_short(by_id[i], 2.0) for i in ("bach_chorale-bwv148_6", "fiddle_tune-AmazonHornpipe", "german_folk-altdeu10-103")]
    broken = {**picked[0], "id": "broken-row", "corpus_path": "bach/no_such_file.mxl"}
    manifest = tmp_path / "manifest.csv"
    corpus.write_manifest(manifest, picked + [broken])
    root, cache = tmp_path / "default", tmp_path / "cache"
    calls: list[tuple[int, int, str]] = []
    kwargs = dict(manifest=manifest, sf2_path=sf2, cache_dir=cache, show_bar=False)

    report = corpus.build_default_set(root, "natural", jobs=2, progress=lambda *a: calls.append(a), **kwargs)
    assert sorted(o.id for o in report.built) == sorted(r["id"] for r in picked)
    assert [o.id for o in report.failed] == ["broken-row"] and "no_such_file" in report.failed[0].reason
    assert [c[0] for c in calls] == [1, 2, 3, 4] and all(c[1] == 4 for c in calls)
    for r in picked:
        assert soundfile.info(str(root / "natural" / f"{r['id']}.wav")).frames == int(2.0 * SR)

    # Second run: valid clips are skipped; a truncated one is rebuilt.
    victim = root / "natural" / f"{picked[1]['id']}.wav"
    victim.write_bytes(victim.read_bytes()[:1000])
    again = corpus.build_default_set(root, "natural", jobs=2, **kwargs)
    assert sorted(again.skipped_existing) == sorted(r["id"] for r in picked if r is not picked[1])
    assert [o.id for o in again.built] == [picked[1]["id"]]

    # The piano variant reuses the extracted notes (no parsing) and still renders every clip.
    piano = corpus.build_default_set(root, "piano", jobs=2, **kwargs)
    assert len(piano.built) == 3 and len(list(cache.glob("*.json.gz"))) == 3
