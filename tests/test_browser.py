"""The app in a real browser: ``streamlit run`` on a free port, driven by Playwright through Debian's Chromium.

Upload a real clip and see the cluster the service gives that file; click a point of the latent map and
hear that track (the page serves its file byte for byte); a screenshot of every page goes to
``test-artifacts/`` (gitignored) for people to look at. Run alone with ``pytest -m browser``; without
Chromium these tests fail (``scripts/setup --browser`` installs it), they never skip.
"""

from __future__ import annotations

import hashlib
import html
import os
import socket
import time
from pathlib import Path

import pytest
from bench.browser import SETTLED
from browser_support import POINT_JS, SELECTED_JS, hover_map_point, streamlit_server

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot"
# Every browser wait is a guard against a hang, never a speed verdict: on a 2-core machine busy with other
# work a page took over 30 s to answer a click. Set as each page's default timeout too.
HANG_MS = 300_000

from playwright import sync_api  # noqa: E402  (a pinned requirement; Chromium is checked by conftest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_checkpoints, real_music_folder, tmp_path_factory):
    """``streamlit run app.py`` on the tiny trained models; always terminated at teardown."""
    logs = tmp_path_factory.mktemp("server")
    env = {**os.environ, "MUSICLUST_CHECKPOINTS": str(trained_checkpoints), "MUSICLUST_DATA": str(real_music_folder),
           "MUSICLUST_JOBS": str(logs / "jobs")}
    with streamlit_server(env, logs, free_port(), HANG_MS / 1000) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(HANG_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def wait_idle(page, timeout: float = HANG_MS) -> None:
    page.wait_for_function(f"() => {SETTLED}", timeout=timeout)


def assert_no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator("[data-testid='stException']").first.inner_text()


def shot(page, name: str) -> Path:
    """A screenshot of the whole page: Streamlit scrolls inside its main section, so grow the viewport to fit it."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 12_000))})
    page.wait_for_timeout(700)  # plots resize to the new viewport
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def open_page(page, url: str, path: str = "") -> float:
    started = time.perf_counter()
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stMain'] h1", timeout=HANG_MS)
    page.wait_for_selector("[data-testid='stSidebar'] [data-testid='stSelectbox']", timeout=HANG_MS)
    wait_idle(page)
    return time.perf_counter() - started


def sidebar_model(page) -> str:
    """The model the sidebar has chosen (the page answers with it)."""
    return page.locator("[data-testid='stSidebar'] input[role='combobox'][aria-label='Model']").input_value().strip()


def test_upload_shows_its_cluster(server, page, real_clip_paths, trained_checkpoints, real_music_folder):
    first = open_page(page, server)
    print(f"time to first page: {first:.2f} s")
    assert_no_exception(page)
    clip = real_clip_paths[0]
    page.wait_for_timeout(3000)  # a person takes a moment to pick a file; the model loads meanwhile
    started = time.perf_counter()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(clip))
    page.wait_for_selector("[data-testid='stFileChipName']", timeout=HANG_MS)
    success = page.locator("[data-testid='stAlertContentSuccess']", has_text="lands in cluster")
    success.wait_for(timeout=HANG_MS)
    answered = time.perf_counter() - started
    wait_idle(page)
    print(f"upload to answer (browser): {answered:.2f} s")
    assert_no_exception(page)
    assert clip.name in success.inner_text()
    from musiclust.service import Service

    model = sidebar_model(page)
    expected = Service(str(real_music_folder), trained_checkpoints).analyse(model, clip).placement
    values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
    assert values[0].strip() == str(expected.cluster), f"the page says cluster {values[0]}, {model} says {expected.cluster}"
    assert f"lands in cluster {expected.cluster}," in success.inner_text()
    assert values[1].strip() == f"{expected.distance_to_centre:.2f}", "the distance to the centre is the service's"
    print(f"analysis time shown by the page: {values[-1].strip()}")
    # five neighbours and the cluster's typical track. A player mounts its stAudio element once the player's
    # code has loaded, after the run has ended (seen under load: 0 at idle, all 6 half a second later); the
    # settled page (no element's skeleton left) has them all
    wait_idle(page)
    assert page.locator("[data-testid='stAudio']").count() == 6
    assert_no_exception(page)
    page.wait_for_timeout(500)  # let the plots finish drawing
    shot(page, "1-your-track")


def point_to_click(page) -> dict:
    """The most isolated point of the map, in page pixels, with its track id and title (from customdata)."""
    return page.evaluate(POINT_JS, CHART)


def test_clicking_a_map_point_plays_that_track(server, page, trained_checkpoints, real_music_folder):
    open_page(page, server, "latent_map")  # a fresh URL straight to the page: the sidebar must still be there
    assert_no_exception(page)
    assert page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").count() >= 2
    page.wait_for_selector(CHART, timeout=HANG_MS)
    page.wait_for_function("(sel) => { const gd = document.querySelector(sel); return gd && gd._fullData && gd._fullLayout.xaxis; }",
                           arg=CHART, timeout=HANG_MS)
    page.wait_for_timeout(500)
    shot(page, "2-latent-map")
    assert point_to_click(page), "the map has points"
    target = hover_map_point(page, CHART, HANG_MS)  # pointed until Plotly holds it, then clicked
    page.mouse.click(target["px"], target["py"])
    page.get_by_text("Selected track").wait_for(timeout=HANG_MS)
    wait_idle(page)
    assert_no_exception(page)
    selected = page.evaluate(SELECTED_JS)
    assert selected and selected["src"], "the page shows the selected track with a player"
    assert html.unescape(target["title"]) in selected["line"], f"clicked {target['title']!r}, the page shows {selected['line']!r}"
    from musiclust.service import Service

    service = Service(str(real_music_folder), trained_checkpoints)
    path = service.track_path(service.bundle(sidebar_model(page)), target["id"])
    reply = page.request.get(selected["src"] if selected["src"].startswith("http") else f"{server}{selected['src']}")
    assert reply.ok
    assert hashlib.sha256(reply.body()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest(), \
        f"the player does not serve {path.name}, the clicked track's file"
    page.wait_for_timeout(500)
    shot(page, "2-latent-map-clicked")

    # a box drawn over the whole plot lists every track and offers the selection as a playlist
    chart = page.locator(CHART).first
    chart.hover()
    chart.locator("[data-title='Box Select']").click()
    area = page.evaluate(
        """(sel) => { const gd = document.querySelector(sel), r = gd.getBoundingClientRect(), l = gd._fullLayout;
        return {x0: r.left + l.xaxis._offset + 2, y0: r.top + l.yaxis._offset + 2,
                x1: r.left + l.xaxis._offset + l.xaxis._length - 2, y1: r.top + l.yaxis._offset + l.yaxis._length - 2}; }""",
        CHART,
    )
    page.mouse.move(area["x0"], area["y0"])
    page.mouse.down()
    page.mouse.move((area["x0"] + area["x1"]) / 2, (area["y0"] + area["y1"]) / 2, steps=5)
    page.mouse.move(area["x1"], area["y1"], steps=5)
    page.mouse.up()
    page.get_by_text("tracks selected").wait_for(timeout=HANG_MS)
    wait_idle(page)
    assert_no_exception(page)
    assert page.get_by_role("button", name="Download M3U playlist").count() >= 2, "the selection and the cluster"
    shot(page, "2-latent-map-box")


@pytest.mark.parametrize("path,name", [("reconstructions", "3-reconstructions"), ("metrics", "4-metrics")])
def test_other_pages_render(server, page, path, name):
    open_page(page, server, path)
    assert_no_exception(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    page.wait_for_selector(CHART, timeout=HANG_MS)
    page.wait_for_timeout(800)
    shot(page, name)
