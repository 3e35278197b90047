"""Collections from a folder (GTZAN layout), a CSV manifest and the default set; bad input is clear."""

import shutil

import pytest

from musiclust.data.collection import load_collection, load_csv, load_default, load_folder
from musiclust.store.table import featurize
from musiclust.errors import DataError, ParameterError


@pytest.fixture
def music_folder(tmp_path, real_clip_paths):
    root = tmp_path / "music"
    for i, src in enumerate(real_clip_paths[:4]):
        genre = "choral" if i < 2 else "strings"
        (root / genre).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / genre / f"track{i}.wav")
    (root / "choral" / "track0.txt").write_text("Herr Gott dich loben wir\n", encoding="utf-8")
    shutil.copy(real_clip_paths[0], root / "loose.wav")
    (root / "notes.md").write_text("not music")
    return root


def test_folder_groups_from_subfolders_and_lyrics_from_txt(music_folder):
    coll = load_folder(music_folder)
    by_title = {t.title: t for t in coll.tracks}
    assert len(coll) == 5
    assert by_title["track0"].group == "choral" and by_title["track3"].group == "strings"
    assert by_title["loose"].group is None
    assert by_title["track0"].lyrics == "Herr Gott dich loben wir"
    assert by_title["track1"].lyrics is None
    assert coll.groups == ["choral", "strings"]
    assert len({t.id for t in coll.tracks}) == 5


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no audio files"):
        load_folder(tmp_path / "empty")


def test_unreadable_file_is_skipped_with_reason(music_folder, tmp_path):
    (music_folder / "strings" / "broken.mp3").write_bytes(b"\x00" * 5000)
    coll = load_folder(music_folder)
    table = featurize(coll, cache_dir=tmp_path / "cache", jobs=1)
    assert len(table) == 5
    (reason,) = [r for p, r in table.skipped.items() if p.endswith("broken.mp3")]
    assert "broken.mp3" in reason


def test_csv_manifest(tmp_path, real_clip_paths):
    shutil.copy(real_clip_paths[0], tmp_path / "one.wav")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text(
        "path,title,artist,genre,lyrics\n"
        "one.wav,First,Someone,folk,la la land\n"
        f"{real_clip_paths[1]},,,,\n"
        "missing.wav,Gone,,,\n"
    )
    coll = load_csv(csv_path)
    assert [t.title for t in coll.tracks] == ["First", real_clip_paths[1].stem]
    assert coll.tracks[0].group == "folk" and coll.tracks[0].lyrics == "la la land"
    assert coll.tracks[1].group is None and coll.tracks[1].lyrics is None
    assert any("missing.wav" in p for p in coll.skipped)
    assert load_collection(str(csv_path)).name == coll.name


def test_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,title\nx.wav,y\n")
    with pytest.raises(DataError, match="'path' column"):
        load_csv(bad)
    with pytest.raises(DataError, match="not found"):
        load_csv(tmp_path / "absent.csv")


def test_default_set_needs_rendering(tmp_path):
    with pytest.raises(DataError, match="python -m musiclust data"):
        load_default("natural", audio_root=tmp_path)
    with pytest.raises(DataError, match="unknown default-set variant"):
        load_default("kazoo")


def test_group_source_is_checked(music_folder, tmp_path):
    with pytest.raises(ParameterError, match="unknown group source"):
        load_collection(str(music_folder), groups="artist")
    with pytest.raises(ParameterError, match="CSV manifest's column"):
        load_folder(music_folder, groups="column")
    with pytest.raises(ParameterError, match="manifest"):
        load_default("natural", groups="tag")


def test_csv_groups_from_a_chosen_column(tmp_path, real_clip_paths):
    for i in range(3):
        shutil.copy(real_clip_paths[i], tmp_path / f"c{i}.wav")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,genre,mood\nc0.wav,folk,calm\nc1.wav,folk,wild\nc2.wav,,calm\n")
    auto = load_collection(str(csv_path))
    assert auto.group_source == "column:genre" and [t.group for t in auto.tracks] == ["folk", "folk", None]
    mood = load_collection(str(csv_path), groups="column", column="mood")
    assert mood.group_source == "column:mood" and mood.groups == ["calm", "wild"]
    assert load_collection(str(csv_path), groups="none").groups == []
    with pytest.raises(DataError, match="no column 'tempo'.*path, genre, mood"):
        load_collection(str(csv_path), groups="column", column="tempo")
    plain = tmp_path / "plain.csv"
    plain.write_text("path\nc0.wav\nc1.wav\n")
    assert load_collection(str(plain)).group_source == "none"


def test_default_set_without_groups_is_an_unlabelled_library(tmp_path, real_clip_paths):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("id,title,composer,group,lyrics,piece_id\na,A,X,chorale,,p1\nb,B,Y,madrigal,,p2\n")
    (tmp_path / "natural").mkdir()
    for clip_id, src in zip("ab", real_clip_paths):
        shutil.copy(src, tmp_path / "natural" / f"{clip_id}.wav")
    labelled = load_default("natural", manifest=manifest, audio_root=tmp_path)
    assert labelled.groups == ["chorale", "madrigal"] and labelled.group_source == "manifest"
    bare = load_default("natural", manifest=manifest, audio_root=tmp_path, groups="none")
    assert bare.groups == [] and bare.group_source == "none" and [t.piece for t in bare.tracks] == ["p1", "p2"]


def test_same_stem_in_two_formats_gets_two_ids(music_folder, real_clip_paths):
    import soundfile as sf

    samples, rate = sf.read(real_clip_paths[0])
    sf.write(music_folder / "choral" / "track0.flac", samples, rate)
    coll = load_folder(music_folder)
    ids = [t.id for t in coll.tracks if t.path.stem == "track0"]
    assert len(ids) == 2 and len(set(ids)) == 2 and "choral-track0" in ids
