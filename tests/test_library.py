"""A real library as it comes: nested Artist/Album folders, MP3/FLAC/OGG/WAV mixed, tags and lyrics
(embedded and sidecars), broken files, rescans, and the libraries the sidebar remembers.

Every file is a real clip from the corpus (conftest), encoded with soundfile and tagged with mutagen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TALB, TCON, TIT2, TPE1, USLT
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from musiclust.data.collection import load_collection, load_folder
from musiclust.data.known import LibraryChoice, known_libraries, last_library, remember_library
from musiclust.data.tags import read_tags, strip_lrc
from musiclust.store.table import featurize

REPO = Path(__file__).resolve().parents[1]
FORMATS = {".mp3": "MP3", ".flac": "FLAC", ".ogg": "OGG", ".wav": "WAV"}


def write_track(source: Path, target: Path, title="", artist="", album="", genre="", lyrics="", lyrics_key="LYRICS") -> Path:
    """``source`` (a real clip) encoded as ``target``'s format, with the given tags written by mutagen."""
    target.parent.mkdir(parents=True, exist_ok=True)
    samples, rate = sf.read(source, dtype="float32")
    sf.write(target, samples, rate, format=FORMATS[target.suffix])
    fields = {"title": title, "artist": artist, "album": album, "genre": genre}
    if target.suffix in (".mp3", ".wav"):
        if target.suffix == ".wav":
            audio = WAVE(target)
            audio.add_tags()
            tags = audio.tags
        else:
            tags = ID3()
        for frame, value in ((TIT2, title), (TPE1, artist), (TALB, album), (TCON, genre)):
            if value:
                tags.add(frame(encoding=3, text=[value]))
        if lyrics:
            tags.add(USLT(encoding=3, lang="eng", desc="", text=lyrics))
        if target.suffix == ".wav":
            audio.save()
        else:
            tags.save(target)
    else:
        audio = (FLAC if target.suffix == ".flac" else OggVorbis)(target)
        for key, value in fields.items():
            if value:
                audio[key] = value
        if lyrics:
            audio[lyrics_key] = lyrics
        audio.save()
    return target


LRC = """[ar:Some Artist]
[ti:Brook Song]
[offset:+120]
[00:01.00]Down by the <00:01.50>river
[00:04.20]Where the willows grow
[Chorus]
[00:08.00]
[00:09.10]Down by the river
"""


def test_strip_lrc_drops_stamps_metadata_and_headers():
    assert strip_lrc(LRC) == "Down by the river\nWhere the willows grow\nDown by the river"
    assert strip_lrc("no markup here\nat all") == "no markup here\nat all"


def test_tags_and_lyrics_from_id3_vorbis_and_sidecars(tmp_path, real_clip_paths):
    lib = tmp_path / "lib"
    mp3 = write_track(real_clip_paths[0], lib / "a.mp3", title="Morning", artist="Anna", album="Dawn", genre="Folk",
                      lyrics="Sing a song of morning light")
    ogg = write_track(real_clip_paths[1], lib / "b.ogg", title="Evening", genre="Jazz", lyrics="Quiet evening falls")
    flac = write_track(real_clip_paths[2], lib / "c.flac", title="Night", lyrics="Stars above the hill",
                       lyrics_key="UNSYNCEDLYRICS")
    lrc_track = write_track(real_clip_paths[3], lib / "d.flac", title="Brook")
    (lib / "d.lrc").write_text(LRC, encoding="utf-8")
    txt_track = write_track(real_clip_paths[4], lib / "e.wav", title="Field", genre="(17)")  # ID3v1 genre number 17 = Rock
    (lib / "e.txt").write_text("Wheat in the field\nwaving slow\n", encoding="utf-16")
    both = write_track(real_clip_paths[5], lib / "f.mp3", lyrics="the embedded words win")
    (lib / "f.txt").write_text("the sidecar words lose", encoding="utf-8")
    plain = write_track(real_clip_paths[6], lib / "g.ogg")

    tags = read_tags(mp3)
    assert (tags.title, tags.artist, tags.album, tags.genre) == ("Morning", "Anna", "Dawn", "Folk")
    assert read_tags(txt_track).genre == "Rock"
    coll = load_folder(lib)
    by_path = {t.path.name: t for t in coll.tracks}
    assert by_path["a.mp3"].lyrics == "Sing a song of morning light"
    assert by_path["b.ogg"].lyrics == "Quiet evening falls" and by_path["b.ogg"].genre == "Jazz"
    assert by_path["c.flac"].lyrics == "Stars above the hill"
    assert by_path["d.flac"].lyrics == "Down by the river Where the willows grow Down by the river"
    assert by_path["e.wav"].lyrics == "Wheat in the field waving slow"
    assert by_path["f.mp3"].lyrics == "the embedded words win"
    assert by_path["g.ogg"].lyrics is None and by_path["g.ogg"].title == "g"
    assert by_path["a.mp3"].title == "Morning" and by_path["a.mp3"].artist == "Anna" and by_path["a.mp3"].album == "Dawn"
    assert coll.group_source == "none"  # one flat folder: no groups
    # the tagged files are still audio: every format decodes and featurizes
    table = featurize(coll, cache_dir=tmp_path / "cache", jobs=1)
    assert len(table) == 7 and not table.skipped
    assert {ogg.name, flac.name, lrc_track.name, both.name, plain.name} <= {t.path.name for t in table.tracks}


@pytest.fixture
def nested_library(tmp_path, real_clip_paths):
    """``Artist/Album/NN Title.ext`` in four formats; genres cut across artists (one spelled two ways)."""
    root = tmp_path / "Music"
    layout = [
        ("Anna", "Dawn", "01 Morning.mp3", "Folk"),
        ("Anna", "Dawn", "02 Noon.flac", "folk"),
        ("Anna", "Dusk", "01 Evening.ogg", "Jazz"),
        ("Ben", "Roads", "01 Highway.wav", "Jazz"),
        ("Ben", "Roads", "02 Byway.mp3", "Folk"),
        ("Ben", "Roads", "03 Lane.flac", ""),
    ]
    for clip, (artist, album, name, genre) in zip(real_clip_paths, layout):
        write_track(clip, root / artist / album / name, title=Path(name).stem[3:], artist=artist, album=album, genre=genre)
    (root / "Anna" / "Dawn" / "01 Morning.lrc").write_text("[00:01.00]Morning has broken\n", encoding="utf-8")
    (root / "Anna" / "Dawn" / "cover.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "Anna" / "Dawn" / "._01 Morning.mp3").write_bytes(b"\x00\x05\x16\x07 macOS shadow")
    return root


def test_nested_library_auto_is_unlabelled_and_tag_gives_genres(nested_library):
    auto = load_collection(str(nested_library))
    assert len(auto) == 6 and auto.groups == [] and auto.group_source == "none"
    assert "nested" in auto.group_reason
    assert not auto.skipped  # cover art and the macOS shadow file are not music: ignored, not failures
    tagged = load_collection(str(nested_library), groups="tag")
    assert tagged.group_source == "tag" and tagged.groups == ["Folk", "Jazz"]  # "folk" merged into "Folk"
    by_title = {t.title: t for t in tagged.tracks}
    assert by_title["Lane"].group is None and by_title["Noon"].group == "Folk"
    assert by_title["Morning"].lyrics == "Morning has broken"
    by_folder = load_collection(str(nested_library), groups="folder")
    assert by_folder.groups == ["Anna", "Ben"]  # asked for: the artists
    assert {t.album for t in by_folder.tracks} == {"Dawn", "Dusk", "Roads"}


def test_auto_takes_folders_when_two_hold_audio_directly(tmp_path, real_clip_paths):
    root = tmp_path / "genres"
    for i, genre in enumerate(["choral", "choral", "strings", "strings"]):
        (root / genre).mkdir(parents=True, exist_ok=True)
        shutil.copy(real_clip_paths[i], root / genre / f"t{i}.wav")
    write_track(real_clip_paths[4], root / "strings" / "live" / "deep.mp3")  # deeper files keep their top folder
    coll = load_folder(root)
    assert coll.group_source == "folder" and "2 sub-folders" in coll.group_reason
    assert {t.path.name: t.group for t in coll.tracks}["deep.mp3"] == "strings"
    assert load_folder(root, groups="none").groups == []
    single = tmp_path / "single"
    shutil.copytree(root / "choral", single / "only")
    shutil.copy(real_clip_paths[5], single / "top.wav")
    one = load_folder(single)
    assert one.group_source == "none" and one.groups == []


def test_ids_are_path_based_unique_and_stable_across_rescans(nested_library, real_clip_paths):
    write_track(real_clip_paths[6], nested_library / "Anna" / "Dawn" / "01 Morning.flac")  # same stem, other format
    first = load_folder(nested_library)
    ids = {t.path.relative_to(nested_library).as_posix(): t.id for t in first.tracks}
    assert len(set(ids.values())) == len(ids) == 7
    assert ids["Ben/Roads/03 Lane.flac"] == "Ben-Roads-03_Lane"
    assert all(t.piece_id == t.id for t in first.tracks)
    (nested_library / "Ben" / "Roads" / "02 Byway.mp3").unlink()
    write_track(real_clip_paths[7], nested_library / "Anna" / "Dawn" / "00 Intro.ogg")
    again = {t.path.relative_to(nested_library).as_posix(): t.id for t in load_folder(nested_library).tracks}
    assert {k: v for k, v in again.items() if k in ids} == {k: v for k, v in ids.items() if k in again}


def test_broken_files_are_listed_with_reasons_never_fatal(tmp_path, real_clip_paths):
    lib = tmp_path / "lib"
    for i in range(3):
        write_track(real_clip_paths[i], lib / f"good{i}{['.mp3', '.flac', '.ogg'][i]}")
    flac = write_track(real_clip_paths[3], tmp_path / "whole.flac")
    (lib / "truncated.flac").write_bytes(flac.read_bytes()[:3000])
    (lib / "text.mp3").write_text("this is a text file, not music\n" * 20)
    (lib / "empty.mp3").write_bytes(b"")
    (lib / "phone.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + b"\x00" * 2000)
    coll = load_folder(lib)
    assert "phone.m4a" in coll.skipped[str(lib / "phone.m4a")] and "M4A" in coll.skipped[str(lib / "phone.m4a")]
    table = featurize(coll, cache_dir=tmp_path / "cache", jobs=1)
    assert sorted(t.path.name for t in table.tracks) == ["good0.mp3", "good1.flac", "good2.ogg"]
    reasons = {Path(p).name: r for p, r in table.skipped.items()}
    assert set(reasons) == {"truncated.flac", "text.mp3", "empty.mp3", "phone.m4a"}
    assert "empty (0 bytes)" in reasons["empty.mp3"]
    assert "not audio that can be decoded" in reasons["text.mp3"] and "the decoder says:" in reasons["text.mp3"]
    assert "truncated.flac" in reasons["truncated.flac"] and "decoded" in reasons["truncated.flac"]


def _entries(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.npz")}


def test_rescan_featurizes_only_new_or_changed_files_and_drops_removed_ones(tmp_path, real_clip_paths):
    lib, cache = tmp_path / "lib", tmp_path / "cache"
    for i in range(4):
        write_track(real_clip_paths[i], lib / "Artist" / "Album" / f"0{i} Track.flac")
    first = featurize(load_folder(lib), cache_dir=cache, jobs=1)
    before = _entries(cache)
    assert len(first) == 4 and len(before) == 4
    # one file re-encoded with other audio, one removed, one added, one only renamed (same bytes)
    write_track(real_clip_paths[8], lib / "Artist" / "Album" / "01 Track.flac")
    (lib / "Artist" / "Album" / "02 Track.flac").unlink()
    write_track(real_clip_paths[9], lib / "Artist" / "Album" / "04 New.flac")
    os.rename(lib / "Artist" / "Album" / "03 Track.flac", lib / "Artist" / "Album" / "03 Renamed.flac")
    second = featurize(load_folder(lib), cache_dir=cache, jobs=1)
    after = _entries(cache)
    new_entries = set(after) - set(before)
    assert len(new_entries) == 2  # the changed file and the new one: nothing else was featurized again
    assert all(after[name] == stamp for name, stamp in before.items())  # untouched entries were not rewritten
    assert sorted(t.path.name for t in second.tracks) == ["00 Track.flac", "01 Track.flac", "03 Renamed.flac", "04 New.flac"]
    assert not np.array_equal(second.mfcc_stats[1], first.mfcc_stats[1])  # the changed file's new features
    np.testing.assert_array_equal(second.mfcc_stats[2], first.mfcc_stats[3])  # the renamed one's, from the cache


def _save_model(root: Path, folder: str, name: str, data=None) -> None:
    from musiclust.serving import checkpoint as ckpt

    meta = {"architecture": name, "versions": {}} | ({"data": data} if data else {})
    ckpt.save(root / folder, name, ckpt.Checkpoint(meta, {"w": np.zeros(2, np.float32)}, {"a": np.ones(1, np.float32)}))


def test_known_libraries_lists_every_data_set_with_models(tmp_path, nested_library):
    root = tmp_path / "checkpoints"
    assert known_libraries(root) == []
    _save_model(root, "default", "basic_vae")  # no data recorded: the default set's folder name says it
    _save_model(root, "folder-music-1234abcd", "basic_vae", data=str(nested_library))
    _save_model(root, "folder-music-1234abcd", "conv_vae", data=str(nested_library))
    _save_model(root, "folder-lost-99999999", "basic_vae")  # says nowhere what it was trained on: left out
    (root / "empty").mkdir()
    libraries = known_libraries(root)
    assert [lib.data for lib in libraries] == [str(nested_library), "default"]  # newest first
    assert libraries[0].models == ("basic_vae", "conv_vae") and libraries[0].folder == root / "folder-music-1234abcd"


def test_the_last_library_chosen_is_remembered_atomically(tmp_path):
    state = tmp_path / "jobs"
    assert last_library(state) is None
    remember_library(LibraryChoice("/home/x/Music", groups="tag"), state)
    remember_library(LibraryChoice("default:piano"), state)
    assert last_library(state) == LibraryChoice("default:piano", "auto", None)
    assert [p.name for p in state.iterdir()] == ["last-library.json"]  # no temporary file left behind
    (state / "last-library.json").write_text('{"data": "x", "groups": "bogus"}')
    assert last_library(state) is None
    (state / "last-library.json").write_text("{half a rec")
    assert last_library(state) is None


def test_cli_groups_option_is_checked():
    from musiclust.__main__ import main

    assert main(["evaluate", "--groups", "artist"]) == 2
    assert main(["evaluate", "--data", "/no/such/folder", "--groups", "tag"]) == 2


@pytest.fixture(scope="module")
def one_model(real_table, real_music_folder, tmp_path_factory) -> Path:
    """A checkpoints root with basic_vae trained for one epoch on the real music folder."""
    from musiclust.pipeline import Settings, train_models
    from musiclust.service import dataset_slug
    from musiclust.serving import checkpoint as ckpt

    root = tmp_path_factory.mktemp("one-model")
    bundle = train_models(real_table, ["basic_vae"], Settings(epochs=1, latent_dim=8, seed=0))["basic_vae"]
    ckpt.save(root / dataset_slug(str(real_music_folder)), "basic_vae", bundle.to_checkpoint())
    return root


def test_predict_on_text_named_mp3_prints_only_its_error_line(one_model, real_music_folder, tmp_path):
    fake = tmp_path / "notaudio.mp3"
    fake.write_text("hello, this is a text file\n")
    proc = subprocess.run(
        [sys.executable, "-m", "musiclust", "predict", str(fake), "--model", "basic_vae",
         "--data", str(real_music_folder), "--checkpoints", str(one_model)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr  # libmpg123's "Note: Illegal Audio-MPEG-Header" no longer leaks
    assert lines[0].startswith("error: notaudio.mp3 is not audio") and "Illegal Audio-MPEG-Header" in lines[0]


def test_decoder_messages_are_captured_per_call_from_many_threads(tmp_path, real_clip_paths):
    """The app decodes in several threads: each failure keeps its own decoder notes, good files still
    decode, and file descriptor 2 is the same file afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from musiclust.errors import AudioError
    from musiclust.features.audio import load_audio

    good = write_track(real_clip_paths[0], tmp_path / "good.mp3")
    bad = tmp_path / "bad.mp3"
    bad.write_text("plain text, not an MPEG stream\n" * 3)
    before = os.fstat(2)

    def decode(path: Path) -> str:
        try:
            return f"ok {len(load_audio(path))}"
        except AudioError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(decode, [good, bad] * 12))
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert all(o.startswith("ok ") for o in outcomes[0::2])
    assert all(o.startswith("bad.mp3 is not audio") and "Illegal Audio-MPEG-Header" in o for o in outcomes[1::2])
