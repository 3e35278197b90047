"""What the browser tests share: waiting for a started server, and how to find a clickable map point in a Plotly chart."""

import time
import urllib.request


def wait_healthy(url: str, proc, why_not=lambda: "", seconds: float = 90) -> None:
    """Wait until the Streamlit server at ``url`` (process ``proc``) answers its health check; raise with
    ``why_not()`` (its log) when it exits or does not answer within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"streamlit did not start:\n{why_not()}")
        time.sleep(0.3)

# The most isolated point of the map, in page pixels, with its track id and title (from customdata):
# pixels from the decoded arrays in gd._fullData and the axes' l2p, avoiding the top toolbar strip.
POINT_JS = """(sel) => {
    const gd = document.querySelector(sel);
    if (!gd || !gd._fullData || !gd._fullLayout.xaxis) return null;
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, rect = gd.getBoundingClientRect();
    const pts = [];
    for (const t of gd._fullData) {
        if (!t.customdata) continue;
        for (let i = 0; i < t.x.length && pts.length < 2000; i++) {
            const px = rect.left + xa._offset + xa.l2p(t.x[i]), py = rect.top + ya._offset + ya.l2p(t.y[i]);
            if (py - rect.top > 60) pts.push({px, py, id: t.customdata[i][0], title: t.customdata[i][1]});
        }
    }
    let best = null, bestGap = -1;
    for (const p of pts) {
        let gap = Infinity;
        for (const q of pts) if (q !== p) gap = Math.min(gap, Math.hypot(p.px - q.px, p.py - q.py));
        if (gap > bestGap) { bestGap = gap; best = p; }
    }
    return best;
}"""
