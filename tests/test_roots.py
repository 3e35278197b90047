"""Library roots: folders and CSVs are read only under the configured roots; `..`, absolute paths
elsewhere and symbolic links out of a root are refused, and a scan never reads a file outside them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from musiclust.data.collection import load_collection
from musiclust.data.roots import ROOTS_ENV, check_path, check_spec, default_roots, is_within_roots, library_roots
from musiclust.errors import DataError
from musiclust.paths import DATA_DIR


@pytest.fixture
def layout(tmp_path, real_clip_paths):
    """``roots/music`` (the one root) with two groups of real clips, and ``outside/`` beside it with a
    real clip and a secret text file that nothing may read."""
    root = tmp_path / "roots" / "music"
    for i, group in enumerate(["choral", "choral", "strings", "strings"]):
        (root / group).mkdir(parents=True, exist_ok=True)
        shutil.copy(real_clip_paths[i], root / group / f"t{i}.wav")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(real_clip_paths[5], outside / "elsewhere.wav")
    (outside / "secret.txt").write_text("password hunter2 for the server")
    return root, outside, (root.resolve(),)


def test_roots_come_from_the_environment_or_default_to_data_and_music(monkeypatch, tmp_path):
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    assert library_roots() == (DATA_DIR.resolve(), (Path.home() / "Music").resolve()) == tuple(p.resolve() for p in default_roots())
    monkeypatch.setenv(ROOTS_ENV, f"{tmp_path / 'a'}{os.pathsep}{os.pathsep} {tmp_path / 'b'} ")
    assert library_roots() == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    monkeypatch.setenv(ROOTS_ENV, "relative/music")
    with pytest.raises(DataError, match="absolute"):
        library_roots()


def test_paths_inside_pass_and_dotdot_absolute_and_links_out_are_refused(layout):
    root, outside, roots = layout
    assert check_path(root / "choral", roots) == (root / "choral").resolve()
    assert check_path(root, roots) == root.resolve()
    (root / "inner-link").symlink_to(root / "strings")  # a link that stays inside is fine
    assert is_within_roots(root / "inner-link", roots)
    (root / "escape").symlink_to(outside)
    refused = [root / ".." / ".." / "outside", root / "choral" / ".." / ".." / ".." / "outside", outside,
               Path("/etc"), Path("/"), root / "escape", root / "escape" / "elsewhere.wav", Path("~/../..")]
    for path in refused:
        with pytest.raises(DataError, match="outside the library roots") as caught:
            check_path(path, roots)
        assert str(outside) not in str(caught.value) or str(outside) in str(path)  # where a link points stays unsaid
    # a path that does not exist is refused with the same message as one that does: no probing the server
    with pytest.raises(DataError, match="outside the library roots"):
        check_path(outside / "no-such-folder", roots)


def test_default_set_is_always_allowed(layout):
    _, _, roots = layout
    assert check_spec("default", roots) == "default" and check_spec("default:piano", roots) == "default:piano"
    with pytest.raises(DataError, match="outside the library roots"):
        check_spec("/etc", roots)


def test_load_collection_refuses_folders_and_csvs_outside_the_roots(layout):
    root, outside, roots = layout
    with pytest.raises(DataError, match="outside the library roots"):
        load_collection(str(outside), roots=roots)
    with pytest.raises(DataError, match="outside the library roots"):
        load_collection(str(root / ".." / ".." / "outside"), roots=roots)
    (outside / "list.csv").write_text(f"path\n{outside / 'elsewhere.wav'}\n")
    with pytest.raises(DataError, match="outside the library roots"):
        load_collection(str(outside / "list.csv"), roots=roots)
    inside = load_collection(str(root), roots=roots)
    assert len(inside) == 4 and inside.groups == ["choral", "strings"]
    assert len(load_collection(str(outside))) == 1  # no roots given: a trusted caller (the CLI) reads anywhere


def test_a_scan_never_reads_files_that_link_out_of_the_roots(layout):
    root, outside, roots = layout
    (root / "strings" / "linked.wav").symlink_to(outside / "elsewhere.wav")
    (root / "choral" / "t0.lrc").symlink_to(outside / "secret.txt")  # a sidecar leading out: never lyrics
    (root / "choral" / "sneaky").symlink_to(outside, target_is_directory=True)
    coll = load_collection(str(root), roots=roots)
    assert sorted(t.path.name for t in coll.tracks) == ["t0.wav", "t1.wav", "t2.wav", "t3.wav"]
    assert "outside the library roots" in coll.skipped[str(root / "strings" / "linked.wav")]
    assert "outside the library roots" in coll.skipped[str(root / "choral" / "t0.lrc")]
    assert "not followed" in coll.skipped[str(root / "choral" / "sneaky")]
    assert all("hunter2" not in (t.lyrics or "") for t in coll.tracks)
    # the same scan without roots follows the file links (a person's own machine)
    trusted = load_collection(str(root))
    assert "linked.wav" in {t.path.name for t in trusted.tracks}
    assert "hunter2" in {t.path.name: t.lyrics for t in trusted.tracks}["t0.wav"]


def test_a_csv_inside_the_roots_cannot_list_files_outside_them(layout):
    root, outside, roots = layout
    manifest = root / "list.csv"
    manifest.write_text(
        "path,genre\n"
        "choral/t0.wav,choral\n"
        f"{outside / 'elsewhere.wav'},strings\n"
        "../../outside/elsewhere.wav,strings\n"
        f"{outside / 'not-there.wav'},strings\n"
    )
    coll = load_collection(str(manifest), roots=roots)
    assert [t.path.name for t in coll.tracks] == ["t0.wav"]
    outside_rows = [reason for path, reason in coll.skipped.items() if "elsewhere" in path or "not-there" in path]
    assert len(outside_rows) == 3 and all("outside the library roots" in r for r in outside_rows)
