"""What the browser tests share: how to find a clickable map point in a Plotly chart."""

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
