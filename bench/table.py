"""The benchmark's table: one row per measure, (figure, measure, ours, reference in the same run, ratio,
goal), rendered as Markdown by :func:`format_table` from a results dict of :func:`bench.run.run`.
Kept apart from the runner: it reads only the JSON, so an old results file renders the same way."""

from __future__ import annotations

from typing import Optional


def _f(x, spec=".2f", unit="") -> str:
    if x is None:
        return "–"
    return f"{x:{spec}}{unit}"


def _met(g: Optional[dict]) -> str:
    if not g:
        return ""
    return {True: "met", False: "MISSED", None: "noted"}[g.get("met")]


def table_rows(results: dict) -> list[list[str]]:
    """Rows of (figure, measure, ours, reference in the same run, ratio, goal)."""
    rows: list[list[str]] = []
    figs = results["figures"]
    label = {"wav_44k_stereo": "WAV 44.1k stereo", "wav_22k_mono": "WAV 22k mono", "ogg": "OGG 44.1k stereo", "mp3": "MP3 44.1k stereo"}

    def broken(name: str, title: str) -> bool:
        fig = figs.get(name)
        if fig is None:
            return True
        if "error" in fig or "skipped" in fig:
            rows.append([title, "", fig.get("error") or f"skipped: {fig['skipped']}", "", "", ""])
            return True
        return False

    if not broken("featurization", "1 Featurization"):
        f = figs["featurization"]
        by = {(r["format"], r["cores"], r["impl"]): r for r in f["rows"]}
        g = f["goals"]
        for fmt in label:
            for cores in (1, 2):
                if (fmt, cores, "ours") not in by:
                    continue
                o, fl, li = by[(fmt, cores, "ours")], by[(fmt, cores, "floor")], by[(fmt, cores, "librosa")]
                r = f["ratios"][fmt][str(cores)]
                wav = fmt.startswith("wav")
                rows.append([
                    "1 Featurization", f"{label[fmt]}, {cores} core{'s' if cores > 1 else ''} (clips/s)",
                    _f(o["clips_per_s"], ".1f"), f"floor {_f(fl['clips_per_s'], '.1f')} · librosa {_f(li['clips_per_s'], '.1f')}",
                    f"{_f(r['ours_vs_floor'])}× · {_f(r['ours_vs_librosa'])}×",
                    (f"≥0.7× {'met' if r['ours_vs_floor'] >= 0.7 else 'MISSED'} · ≥1.5× {'met' if r['ours_vs_librosa'] >= 1.5 else 'MISSED'}") if wav else "",
                ])
                v1 = by.get((fmt, cores, "ours_v1"))
                if v1 is not None:
                    rows.append(["1 Featurization", f"{label[fmt]}, {cores} core{'s' if cores > 1 else ''}, features_version 1 (float64 FFT)",
                                 _f(v1["clips_per_s"], ".1f"), "the same references",
                                 f"{_f(r.get('ours_v1_vs_floor'))}× · {_f(r.get('ours_v1_vs_librosa'))}×", ""])
        fid = f.get("fidelity")
        if fid:
            rows.append(["1 Featurization", f"largest dB distance from librosa's melspectrogram → power_to_db, {fid['clips']} clips: v2 · v1 "
                         f"(in bands within {fid['loud_within_db']:.0f} dB of their frame: v2 · v1)",
                         f"{fid['v2']['max_abs_db']:.1e} · {fid['v1']['max_abs_db']:.1e} ({fid['v2']['max_abs_db_loud']:.1e} · {fid['v1']['max_abs_db_loud']:.1e})",
                         "", "", ""])
        rows.append(["1 Featurization", "goals on WAV", "", "", "", f"{_met(g['vs_floor_wav'])} / {_met(g['vs_librosa_wav'])}"])
    if not broken("upload", "2 Upload → answer"):
        u = figs["upload"]
        head = u["default_model"]
        for fmt_key, fmt_label in (("wav_44k_stereo", "WAV"), ("mp3", "MP3")):
            for name, m in u[fmt_key].items():
                rows.append([
                    "2 Upload → answer", f"{name}{' (app default)' if name == head else ''}, {fmt_label}: p50 / p95 (ms)",
                    f"{_f(m['warm_s']['p50'] * 1000, '.0f')} / {_f(m['warm_s']['p95'] * 1000, '.0f')}",
                    f"floor {_f(m['reference_floor_s']['p50'] * 1000, '.0f')} · librosa {_f(m['reference_librosa_s']['p50'] * 1000, '.0f')}",
                    f"{_f(m['p50_vs_floor'])}× · {_f(m['p50_vs_librosa'])}×",
                    ("p95 ≤300 ms " + ("met" if m["warm_s"]["p95"] <= 0.3 else "MISSED")) if fmt_key == "wav_44k_stereo" else "",
                ])
        c = u["cold_start"]
        rows.append(["2 Upload → answer", f"first call after a cold start ({c['model']}; + {c['import_s']:.1f} s imports) (s)",
                     _f(c["first_call_s"]), "warm p50", f"{_f(c['first_call_vs_warm_p50'], '.1f')}×", ""])
    if not broken("training", "3 Training"):
        t = figs["training"]
        ref = (t["reference"]["torch_step_s_before"] + t["reference"]["torch_step_s_after"]) / 2
        rows.append(["3 Training", f"full retrain, all models (s); peak memory {t['peak_pss_mb']:.0f} MB PSS ({t['peak_rss_mb']:.0f} MB RSS)", _f(t["wall_seconds"], ".1f"),
                     f"torch step {ref * 1000:.0f} ms", f"{_f(t['ratios']['wall_vs_reference_step'], '.0f')} steps", _met(t["goals"]["retrain"])])
        for name, m in t["models"].items():
            per = m["seconds_per_epoch"].get("p50")
            rows.append(["3 Training", f"{name}: s/epoch p50 · epochs · total s" + (f" (reuses {m['reuses']})" if m.get("reuses") else ""),
                         f"{_f(per)} · {m['epochs_run']} · {_f(m['seconds_total'], '.1f')}", f"torch step {ref * 1000:.0f} ms",
                         f"{_f(m['epoch_vs_reference_step'], '.1f')} steps/epoch", ""])
    if not broken("app", "4 App start"):
        a = figs["app"]
        rows.append(["4 App start", "streamlit run → /_stcore/health (s, p50)", _f(a["health_s"]["p50"]), f"one-line app {_f(a['reference_health_s']['p50'])}",
                     f"{_f(a['ratios']['health_vs_reference'])}×", ""])
        rows.append(["4 App start", "streamlit run → first page rendered in Chromium (s, p50)", _f(a["first_page_s"]["p50"]),
                     f"one-line app {_f(a['reference_first_page_s']['p50'])}", f"{_f(a['ratios']['first_page_vs_reference'])}×", _met(a["goals"]["first_page"])])
    if not broken("map", "5 Map size"):
        m = figs["map"]
        ref = m["server"][0]
        browser = m.get("browser") or {}
        brow = {r["n"]: r for r in browser.get("rows", [])}
        bref = brow.get(m["reference_points"], {})
        for row in m["server"]:
            n = row["n"]
            b = brow.get(n, {})
            is_ref = n == m["reference_points"]
            drawn = b.get("page_to_drawn_s")
            rows.append([
                "5 Map size", f"{n:,} points{' (the collection: reference)' if is_ref else ''}: server build+JSON · payload · drawn in browser · pan step",
                f"{_f(row['server_total_s'] * 1000, '.0f')} ms · {_f(row['payload_mb'], '.2f')} MB · "
                + (f"{drawn:.2f} s · {_f(b.get('ms_per_drag_step'), '.0f')} ms" if drawn is not None else b.get("error", "–")),
                "" if is_ref else f"{_f(ref['server_total_s'] * 1000, '.0f')} ms · {_f(bref.get('page_to_drawn_s'))} s · {_f(bref.get('ms_per_drag_step'), '.0f')} ms",
                "" if is_ref else f"{_f(row.get('server_vs_reference'), '.1f')}× · {_f(b.get('drawn_vs_reference'), '.1f')}× · {_f(b.get('drag_step_vs_reference'), '.1f')}×",
                ("smooth" if b.get("smooth") else "not smooth") if b else "",
            ])
    if not broken("scaling", "6 Scaling"):
        sc = figs["scaling"]
        by = {(r["n"], r["jobs"]): r for r in sc["rows"]}
        small = sc["sizes"][0]
        for n in sc["sizes"]:
            one, two = by.get((n, 1)), by.get((n, 2))
            if not one or not two:
                continue
            rows.append([
                "6 Scaling", f"{n} clips: ms/clip 1 worker · 2 workers · peak memory PSS 1 / 2 workers (MB)",
                f"{one['ms_per_clip']:.1f} · {two['ms_per_clip']:.1f} · {one['peak_pss_mb']:.0f} / {two['peak_pss_mb']:.0f}",
                f"N={small}: {by[(small, 1)]['ms_per_clip']:.1f} · {by[(small, 2)]['ms_per_clip']:.1f}",
                f"{one['ms_per_clip'] / by[(small, 1)]['ms_per_clip']:.2f}× · speed-up {one['seconds'] / two['seconds']:.2f}×",
                "",
            ])
        fit = sc.get("linear_fit") or {}
        if "1" in fit and "2" in fit:
            rows.append(["6 Scaling", "linear fit, total = fixed + N x per clip: ms/clip 1 worker · 2 workers (fixed s)",
                         f"{fit['1']['ms_per_clip']:.1f} · {fit['2']['ms_per_clip']:.1f} ({fit['1']['fixed_s']:.1f} / {fit['2']['fixed_s']:.1f} s)", "",
                         f"speed-up {fit['1']['ms_per_clip'] / fit['2']['ms_per_clip']:.2f}× · memory {sc['memory_mb_per_clip'].get('1', float('nan')):.2f} MB/clip", ""])
        floor = (sc["reference"]["floor_ms_per_clip_before"] + sc["reference"]["floor_ms_per_clip_after"]) / 2
        rows.append(["6 Scaling", "floor (soundfile + bare rFFT, 1 core) on the same files (ms/clip)", "", f"{floor:.1f}", "", _met(sc["goals"]["flat"])])
    rows += _dask_rows(figs, broken) + _index_rows(figs, broken) + _stream_rows(figs, broken) + _projection_rows(results)
    if not broken("answer", "10 Answer in the browser"):
        from bench.answer import table_rows as answer_rows

        rows += answer_rows(figs["answer"], _met)
    if not broken("fresh", "11 Fresh machine"):
        from bench.freshstart import table_rows as fresh_rows

        rows += fresh_rows(figs["fresh"], _met)
    return rows


def _dask_rows(figs: dict, broken) -> list[list[str]]:
    if broken("dask", "7 Dask"):
        return []
    d, rows = figs["dask"], []
    by = {(r["n"], r["workers"]): r for r in d["rows"]}
    serial = (d["reference"]["serial_ms_per_track_before"] + d["reference"]["serial_ms_per_track_after"]) / 2
    small = d["sizes"][0]
    for n in d["sizes"]:
        one, two = by.get((n, 1)), by.get((n, 2))
        if not one or not two:
            continue
        rows.append(["7 Dask", f"{n:,} tracks: tracks/s 1 worker · 2 workers (ms/track 1 · 2)",
                     f"{one['tracks_per_s']:.1f} · {two['tracks_per_s']:.1f} ({one['ms_per_track']:.1f} · {two['ms_per_track']:.1f})",
                     f"no Dask {serial:.1f} ms/track · N={small}: {by[(small, 1)]['ms_per_track']:.1f}",
                     f"speed-up {d['ratios']['speedup_2_vs_1_workers'][str(n)]:.2f}× · {one['ms_per_track'] / by[(small, 1)]['ms_per_track']:.2f}× of N={small}",
                     _met(d["goals"]["speedup"]) if n == d["sizes"][-1] else ""])
    last = d["sizes"][-1]
    one, two = by.get((last, 1)), by.get((last, 2))
    if one and two:
        rows.append(["7 Dask", f"start-up (cluster + worker warm-up, s) 1 · 2 workers; peak RSS per worker · client (MB) at {last:,}",
                     f"{one['startup_s']:.1f} · {two['startup_s']:.1f}; {two['worker_peak_rss_mb']:.0f} · {two['client_peak_rss_mb']:.0f}",
                     f"store {two['store_mb_per_track']:.2f} MB/track", "", _met(d["goals"]["flat"])])
    fit = d.get("linear_fit") or {}
    if fit.get("1") and fit.get("2"):
        rows.append(["7 Dask", "linear fit, total = fixed + N x per track: ms/track 1 · 2 workers (fixed s)",
                     f"{fit['1']['ms_per_track']:.1f} · {fit['2']['ms_per_track']:.1f} ({fit['1']['fixed_s']:.1f} / {fit['2']['fixed_s']:.1f} s)",
                     "", "", ""])
    var = {r["workers"]: r for r in d.get("malloc_variant") or []}
    if var:
        r = d["ratios"]
        rows.append(["7 Dask", f"{last:,} tracks, MALLOC_TRIM_THRESHOLD_ unset in the workers: tracks/s " + " · ".join(f"{w}w" for w in sorted(var)),
                     " · ".join(f"{var[w]['tracks_per_s']:.1f}" for w in sorted(var)),
                     f"no Dask, with the nanny's setting: {d['reference']['serial_ms_per_track_nanny_malloc_env']:.1f} ms/track",
                     " · ".join(f"{r['unset_vs_dask_default_speed'][str(w)]:.2f}×" for w in sorted(var))
                     + (f" · speed-up {r['speedup_2_vs_1_workers_unset']:.2f}×" if r.get("speedup_2_vs_1_workers_unset") else ""), ""])
    return rows


def _index_rows(figs: dict, broken) -> list[list[str]]:
    if broken("index", "8 Index"):
        return []
    ix, rows = figs["index"], []
    big, small = ix["n_big"], ix["n_small"]
    for step, label in (("kmeans", "k-means (production path)"), ("minibatch", "MiniBatchKMeans"), ("map", "UMAP map")):
        b, sm = ix["steps"].get(f"{step}_{big}"), ix["steps"].get(f"{step}_{small}")
        if not b or not sm:
            continue
        extra = f" (fit {b['umap_fit_s']:.1f} + transform {b['umap_transform_s']:.1f} s)" if step == "map" and b.get("umap_transform_s") else ""
        rows.append(["8 Index", f"{label} of {big:,} tracks [{b['path']}]: s · peak RSS (+ step) MB",
                     f"{b['seconds']:.2f}{extra} · {b['peak_rss_mb']:.0f} (+{b['added_mb']:.0f})",
                     f"{small:,} tracks: {sm['seconds']:.2f} s · {sm['peak_rss_mb']:.0f} (+{sm['added_mb']:.0f})",
                     f"{ratio_text(b['seconds'], sm['seconds'])}", ""])
    up = ix["upload"]
    if "skipped" in up:
        rows.append(["8 Index", "upload -> answer", f"skipped: {up['skipped']}", "", "", ""])
    else:
        rows.append(["8 Index", f"upload -> answer with {big:,} tracks in the index: p50 / p95 (ms); place() alone p50",
                     f"{up['analyse_big_s']['p50'] * 1000:.0f} / {up['analyse_big_s']['p95'] * 1000:.0f}; {up['place_big_s']['p50'] * 1000:.1f}",
                     f"{small:,} tracks: {up['analyse_small_s']['p50'] * 1000:.0f} / {up['analyse_small_s']['p95'] * 1000:.0f}; "
                     f"{up['place_small_s']['p50'] * 1000:.1f}",
                     f"{up['analyse_big_vs_small_p50']:.2f}× · index adds {up['index_added_rss_mb']:.0f} MB RSS", _met(ix["goals"]["p95"])])
    return rows


def ratio_text(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.1f}×" if a is not None and b else "–"


def _stream_rows(figs: dict, broken) -> list[list[str]]:
    if broken("stream", "9 Stream training"):
        return []
    st, rows = figs["stream"], []
    first = st["rows"][0]
    for r in st["rows"]:
        rows.append(["9 Stream training", f"{r['n']:,} tracks: peak RSS (MB) · table / prepare s · fit s/batch ({r['batches']} batches)",
                     f"{r['peak_rss_mb']:.0f} · {r['phases']['table']['seconds']:.1f} / {r['phases']['prepare']['seconds']:.1f} · {r['fit_seconds_per_batch']:.2f}",
                     f"{first['n']:,} tracks: {first['peak_rss_mb']:.0f} MB", f"{r['peak_rss_mb'] / first['peak_rss_mb']:.2f}× · lyrics matrix {r['lyrics_matrix_mb']:.0f} MB",
                     _met(st["goals"]["flat"]) if r is st["rows"][-1] else ""])
    return rows


def _projection_rows(results: dict) -> list[list[str]]:
    from bench.projection import lines

    p = results.get("projection")
    if not p:
        return []
    return [[f"Projection {p['tracks']:,} tracks / {p['workers']} workers", line.split(": ", 1)[0], line.split(": ", 1)[1], "", "", ""] for line in lines(p)]


def format_table(results: dict) -> str:
    header = ["figure", "measure", "ours", "reference (same run)", "ratio", "goal"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows(results):
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    m = results["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, Python {m['python']}; "
                 f"load average {m['load_average_at_start'][0]:.1f} at start, {m.get('load_average_at_end', [float('nan')])[0]:.1f} at end; "
                 f"commit {m['git_commit']}; run took {results.get('seconds', 0) / 60:.1f} min.")
    loads = [f"{name} {fig['load_average'][0]:.1f} → {fig['load_average'][1]:.1f}" for name, fig in results["figures"].items() if fig.get("load_average")]
    if loads:
        lines.append(f"Load average (1 min) at each figure's start → end: {'; '.join(loads)}.")
    return "\n".join(lines)
