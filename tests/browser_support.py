"""What the browser tests share: a Streamlit server for the app, how to find a clickable map point in a
Plotly chart, and what the latent-map page shows for the clicked one."""

import contextlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The most isolated point of the map that the mouse can reach, in page pixels, with its track id and
# title (from customdata): pixels from the decoded arrays in gd._fullData and the axes' l2p. Null while
# the chart is undrawn, or while none of its points is in the window (the chart is then scrolled to).
POINT_JS = """(sel) => {
    const gd = document.querySelector(sel);
    if (!gd || !gd._fullData || !gd._fullLayout.xaxis) return null;
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, rect = gd.getBoundingClientRect();
    // only points the mouse can reach: inside the plot area, below the mode bar, and inside the window
    // (a point below the viewport's edge takes no hover however often it is pointed at)
    const top = Math.max(rect.top + 60, 5), bottom = Math.min(rect.top + ya._offset + ya._length, window.innerHeight - 5);
    const left = Math.max(rect.left + xa._offset, 5), right = Math.min(rect.left + xa._offset + xa._length, window.innerWidth - 5);
    const all = [], pts = [];
    for (const t of gd._fullData) {
        if (!t.customdata) continue;
        for (let i = 0; i < t.x.length && all.length < 2000; i++) {
            const px = rect.left + xa._offset + xa.l2p(t.x[i]), py = rect.top + ya._offset + ya.l2p(t.y[i]);
            all.push({px, py, id: t.customdata[i][0], title: t.customdata[i][1]});
        }
    }
    for (const p of all) if (p.px > left && p.px < right && p.py > top && p.py < bottom) pts.push(p);
    if (all.length && !pts.length) { gd.scrollIntoView({block: "center"}); return null; }  // point again once in view
    let best = null, bestGap = -1;
    for (const p of pts) {
        let gap = Infinity;
        for (const q of all) if (q !== p) gap = Math.min(gap, Math.hypot(p.px - q.px, p.py - q.py));
        if (gap > bestGap) { bestGap = gap; best = p; }
    }
    return best;
}"""

# Whether Plotly holds the point with track id ``id`` as hovered. Its click handler emits the click for
# the hover data of the last mouse move, and a chart drawn again after that move (Streamlit redraws it
# when a rerun finishes; on a loaded machine that can come after the move) has forgotten the hover and
# waits for a new move: a click then selects nothing. So tests point, wait for this, and point again.
HOVERED_JS = """([sel, id]) => {
    const gd = document.querySelector(sel);
    return !!(gd && gd._hoverdata && gd._hoverdata.some(p => p.customdata && p.customdata[0] === id));
}"""
HOVER_RETRY_MS = 1000  # how long one pointing waits for Plotly's hover before locating and pointing again


def hover_map_point(page, chart: str, hang_ms: float) -> dict:
    """Point the mouse at the map's most isolated point (POINT_JS) until Plotly holds it as hovered
    (HOVERED_JS), locating it anew each try; the point, for a click. ``hang_ms`` is a hang guard."""
    target = None
    for _ in range(max(1, round(hang_ms / HOVER_RETRY_MS))):  # tries of HOVER_RETRY_MS each: a hang guard, no clock
        target = page.evaluate(POINT_JS, chart)
        if not target:  # the chart is being drawn again: look once more in a moment
            page.wait_for_timeout(HOVER_RETRY_MS)
        else:
            page.mouse.move(target["px"] - 4, target["py"])  # a real move, also when already there
            page.mouse.move(target["px"], target["py"])
            try:
                page.wait_for_function(HOVERED_JS, arg=[chart, target["id"]], timeout=HOVER_RETRY_MS)
                return target
            except Exception:  # noqa: BLE001 - Playwright's timeout: point again, until the guard
                pass
    raise TimeoutError(f"no map point took the hover in {round(hang_ms / HOVER_RETRY_MS)} tries (last: {target})")


async def hover_map_point_async(page, chart: str, hang_ms: float) -> dict:
    """hover_map_point for Playwright's async API (the soak test's concurrent sessions)."""
    target = None
    for _ in range(max(1, round(hang_ms / HOVER_RETRY_MS))):  # tries of HOVER_RETRY_MS each: a hang guard, no clock
        target = await page.evaluate(POINT_JS, chart)
        if not target:
            await page.wait_for_timeout(HOVER_RETRY_MS)
        else:
            await page.mouse.move(target["px"] - 4, target["py"])
            await page.mouse.move(target["px"], target["py"])
            try:
                await page.wait_for_function(HOVERED_JS, arg=[chart, target["id"]], timeout=HOVER_RETRY_MS)
                return target
            except Exception:  # noqa: BLE001 - as above
                pass
    raise TimeoutError(f"no map point took the hover in {round(hang_ms / HOVER_RETRY_MS)} tries (last: {target})")


# The block the latent-map page draws for a clicked track: the element after the "Selected track" heading
# (its title line) and the first player after it (its file), siblings in the page's main column.
SELECTED_JS = """() => {
    const head = [...document.querySelectorAll("[data-testid='stMain'] h3")].find(h => h.innerText.trim() === "Selected track");
    if (!head) return null;
    const box = head.closest("[data-testid='stElementContainer']");
    const line = box && box.nextElementSibling;
    let next = line, audio = null;
    while (next && !audio) { audio = next.querySelector("[data-testid='stAudio']"); next = next.nextElementSibling; }
    const src = audio && (audio.getAttribute("src") || (audio.querySelector("audio") || {}).src);
    return line ? {line: line.innerText, src: src || null} : null;
}"""


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_healthy(url: str, proc, seconds: float, log: Path = None) -> None:
    """Until the server at ``url`` answers its health check; raise (with the tail of ``log``) when
    ``proc`` exits or ``seconds`` pass (a hang guard, not a speed verdict)."""
    deadline = time.monotonic() + seconds
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"streamlit did not start:\n{tail}")
        time.sleep(0.3)


@contextlib.contextmanager
def streamlit_server(env: dict, logs: Path, port: int, start_guard_s: float):
    """``streamlit run app.py`` headless on ``port`` with ``env``, its output in ``logs/streamlit.log``;
    yields the URL once healthy (``start_guard_s``: a hang guard, not a speed verdict) and always
    terminates the server."""
    with open(logs / "streamlit.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
             "--server.address", "127.0.0.1"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, start_guard_s, logs / "streamlit.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
