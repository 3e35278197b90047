"""A person's own library in a real browser (issue 12): a flat, lyric-less folder of real recordings.

In one session: a path outside the library roots is refused; the folder is picked in the sidebar and
trained from the page (1 epoch, latent 8) until the progress ends; a new session starts on that
library (remembered) and its map holds every track; an uploaded track's neighbour plays that file's
bytes. Screenshots go to ``test-artifacts/library-*.png``. Run with ``pytest -m browser``; it needs Chromium
and the Debian soundtrack packages that ``scripts/build_real_set.py --fixture`` reads (it fails without them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser_support import streamlit_server
from test_browser import CHART, HANG_MS, assert_no_exception, browser, free_port, page, shot, wait_idle  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SIDEBAR = "[data-testid='stSidebar']"
HANG_GUARD_S = 900  # a hang guard only: 12 clips, 1 epoch, every model, on a busy 2-core machine


@pytest.fixture(scope="module")
def flat_library(tmp_path_factory) -> tuple[Path, Path]:
    """(library root, flat folder): 12 real 12-s excerpts of 3 game soundtracks, no sub-folders, no lyrics."""
    built = tmp_path_factory.mktemp("real-fixture")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "build_real_set.py"), "--fixture", str(built),
                             "--per-soundtrack", "4", "--seconds", "12"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"building the real-recording fixture failed (exit {result.returncode}); it needs "
                                    f"the Debian soundtrack packages (scripts/setup installs them):\n{result.stderr[-2000:]}")
    root = tmp_path_factory.mktemp("library-root")
    flat = root / "my music"
    flat.mkdir()
    for clip in sorted(built.glob("*/*.flac")):
        shutil.copy(clip, flat / clip.name)
    assert len(list(flat.iterdir())) == 12
    return root, flat


@pytest.fixture(scope="module")
def library_server(flat_library, tmp_path_factory):
    """``streamlit run app.py`` with only ``flat_library``'s root as library root and no trained model."""
    root, _ = flat_library
    state = tmp_path_factory.mktemp("library-server")
    env = {**os.environ, "MUSICLUST_LIBRARY_ROOTS": str(root), "MUSICLUST_CHECKPOINTS": str(state / "checkpoints"),
           "MUSICLUST_JOBS": str(state / "jobs")}
    env.pop("MUSICLUST_DATA", None)
    with streamlit_server(env, state, free_port(), HANG_MS / 1000) as url:
        yield url, state


def open_app(page, url: str, path: str = "") -> None:
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stMain'] h1", timeout=HANG_MS)
    page.wait_for_selector(f"{SIDEBAR} [data-testid='stSelectbox']", timeout=HANG_MS)
    wait_idle(page)


def type_library_path(page, path: str) -> None:
    """Sidebar → Data set → "A music folder or CSV manifest…" → type ``path``."""
    field = page.get_by_label("Folder or CSV path")
    if not field.count():
        page.locator(f"{SIDEBAR} [data-testid='stSelectbox']").first.click()
        page.get_by_role("option", name="A music folder or CSV manifest…").click()
        field.wait_for(timeout=HANG_MS)
        wait_idle(page)
    field.fill(path)
    field.press("Enter")
    page.wait_for_timeout(300)
    wait_idle(page)


def set_number(page, label: str, value: int) -> None:
    box = page.locator(SIDEBAR).get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def test_train_a_flat_library_from_the_sidebar_see_it_and_hear_a_neighbour(library_server, flat_library, page):
    url, state = library_server
    _, flat = flat_library
    open_app(page, url)
    assert_no_exception(page)

    # 5. a path outside the library roots is refused, with the roots and how to add one
    type_library_path(page, "/etc")
    refusal = page.locator(f"{SIDEBAR} [data-testid='stAlertContentError']", has_text="outside the library roots")
    refusal.wait_for(timeout=HANG_MS)
    assert "MUSICLUST_LIBRARY_ROOTS" in refusal.inner_text()
    assert_no_exception(page)
    shot(page, "library-1-refused")

    # 1. the flat, lyric-less folder
    type_library_path(page, str(flat))
    page.locator(SIDEBAR).get_by_text("No trained model for this data set yet").wait_for(timeout=HANG_MS)
    assert_no_exception(page)

    # 2. train from the page: every model, 1 epoch, latent 8; k left at 0, so it is found from the data
    page.locator(SIDEBAR).get_by_text("Retrain models").click()
    set_number(page, "Epochs", 1)
    set_number(page, "Latent size", 8)
    shot(page, "library-2-retrain-form")
    page.locator(SIDEBAR).get_by_role("button", name="Start retrain").click()
    progress = page.locator(f"{SIDEBAR} [data-testid='stProgress']")
    finished = page.locator(f"{SIDEBAR} [data-testid='stAlertContentSuccess']", has_text="Last retrain finished")
    failed = page.locator(f"{SIDEBAR} [data-testid='stAlertContentError']", has_text="Last retrain")
    progress.or_(finished).or_(failed).first.wait_for(timeout=HANG_MS)
    if progress.count():
        shot(page, "library-3-progress")
    finished.or_(failed).first.wait_for(timeout=HANG_GUARD_S * 1000)
    wait_idle(page)
    assert not failed.count(), failed.first.inner_text() + (state / "jobs" / "retrain.log").read_text()[-3000:]
    outcome = finished.inner_text()
    assert re.search(r"\d+ of 5 trained", outcome), outcome
    assert_no_exception(page)
    shot(page, "library-4-trained")

    # 3. every track on the map, in a new session: it starts on the library chosen last
    open_app(page, url, "latent_map")
    assert_no_exception(page)
    page.wait_for_function("(sel) => { const gd = document.querySelector(sel); return gd && gd._fullData; }",
                           arg=CHART, timeout=HANG_MS)
    ids = page.evaluate("""(sel) => { const ids = new Set();
        for (const t of document.querySelector(sel)._fullData) if (t.customdata) for (const c of t.customdata) ids.add(c[0]);
        return ids.size; }""", CHART)
    assert ids == 12, f"{ids} tracks on the map, the folder has 12"
    shot(page, "library-5-map")

    # 4. upload a track and hear a neighbour: its player serves that file's bytes
    open_app(page, url)
    clip = sorted(flat.iterdir())[0]
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(clip))
    page.locator("[data-testid='stAlertContentSuccess']", has_text="lands in cluster").wait_for(timeout=HANG_MS)
    wait_idle(page)
    assert_no_exception(page)
    # a neighbour plays its file, or the small MP3 of what the model heard of it once that exists
    from musiclust.serving.previews import preview_entry

    files = {p.read_bytes() for p in flat.iterdir()}
    files |= {e.read_bytes() for e in (preview_entry(p) for p in flat.iterdir() if p.suffix != ".txt") if e.is_file()}
    page.wait_for_function("""() => [...document.querySelectorAll("[data-testid='stMain'] [data-testid='stAudio']")]
        .some(a => a.getAttribute("src") || (a.querySelector("audio") || {}).src)""", timeout=HANG_MS)
    served = []
    for player in page.locator("[data-testid='stMain'] [data-testid='stAudio']").all():
        src = player.get_attribute("src") or player.locator("audio").get_attribute("src")
        if src:
            reply = page.request.get(src if src.startswith("http") else f"{url}{src}")
            served.append(reply.ok and reply.body() in files)
    assert any(served), f"no neighbour's player serves its file ({len(served)} players)"
    shot(page, "library-6-upload")

    open_app(page, url, "metrics")
    assert_no_exception(page)
    assert page.get_by_text("label-free scores").count() >= 1
    assert page.get_by_text("found from the data: a sweep over k").count() == 1
    page.wait_for_selector(CHART, timeout=HANG_MS)
    shot(page, "library-7-metrics")
