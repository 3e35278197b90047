"""Reconstructions: what each trained model keeps of a track, seen and heard; and a morph between two tracks."""

import pandas as pd
import streamlit as st

import musiclust_app as ui
from musiclust.service import MusiclustError, model_catalogue

REUSES = {m.name: m.reuses for m in model_catalogue() if m.reuses}

ctx = ui.page_context()
st.title("Reconstructions")
st.caption(
    "A track's log-mel spectrogram beside each trained model's reconstruction, on one dB colour scale, with the "
    "reconstruction error, and below them the reference a VAE should beat: PCA of the same segments with as many "
    "components as the latent, fitted on the same training tracks. Spectrograms have no phase, so the audio is rendered back with Griffin-Lim: the "
    "original goes through the same rendering, so you compare like with like."
)

model = ui.page_model(ctx)
frame = ui.tracks_of(ctx)
config = model.feature_config
last = st.session_state.get("last_upload")
if last and last.get("dataset") != ctx.dataset:
    last = None

names_by_id = dict(zip(frame["id"], [
    " · ".join(part for part in (str(t), str(g), str(a)) if part)
    for t, g, a in zip(frame["title"], frame["group"], frame["artist"])
]))


def track_name(track_id: str) -> str:
    return names_by_id.get(track_id, track_id)


def label_text(label) -> str:
    """The decoder label in a table cell (plain text)."""
    if label is None:
        return "none (not conditioned)"
    why = "its group" if label.source == "group" else f"majority group of cluster {label.cluster}"
    return f"{label.name} ({why})"


# --- which track ------------------------------------------------------------------------------
sources = ["A collection track"] + (["Your last upload"] if last else [])
source = st.segmented_control("Track", sources, default=sources[0], key="recon_source") or sources[0]
if source == "Your last upload":
    source_key, title, row = ("upload", last["digest"]), last["name"], None
else:
    track_id = st.selectbox("Collection track", frame["id"].tolist(), format_func=track_name, key="recon_track")
    row = frame.loc[frame["id"] == track_id].iloc[0]
    source_key, title = ("track", track_id), row["title"]

names = st.multiselect("Models", ctx.models, default=ctx.models, key="recon_models")
if not names:
    st.info("Pick at least one model.")
    st.stop()

try:
    if source_key[0] == "upload":
        report = ui.reconstruction_report(ctx, names, upload=last)
    else:
        report = ui.reconstruction_report(ctx, names, track_id=source_key[1])
except MusiclustError as exc:
    st.error(f"No reconstruction: {ui.md(exc)}")
    st.stop()
for name, reason in report.skipped.items():
    st.warning(f"{name} could not be loaded and is left out: {ui.md(reason)}")
for r in report.rows:
    if r.label is not None:
        st.info(f"**{r.model}** is conditioned on the group label: its decoder was given {ui.describe_label(r.label, r.model)}.",
                icon=":material/label:")

st.plotly_chart(ui.reconstruction_figure(report, title, config), key="recon_fig")
for name in (n for n in (r.model for r in report.rows) if REUSES.get(n) in names):
    st.caption(f"{name} reuses {REUSES[name]}'s network and adds to it after the encoder only, so it reconstructs "
               f"exactly as {REUSES[name]} does when both come from the same training run.")
errors = pd.DataFrame({
    "model": [r.model for r in report.all_rows],
    "reconstruction MSE (dB²)": [r.mse_db for r in report.all_rows],
    "decoder label": [label_text(r.label) if r is not report.reference else "– (a linear reference)" for r in report.all_rows],
})
st.dataframe(errors, hide_index=True, column_config={"reconstruction MSE (dB²)": st.column_config.NumberColumn(format="%.1f")})

# --- listening --------------------------------------------------------------------------------
st.subheader("Listen", anchor=False)
st.caption("The real file; the original spectrogram rendered with Griffin-Lim; then each reconstruction rendered the same way.")
a, b = st.columns([2, 1])
render = a.toggle("Render the spectrograms as audio", value=False, key="recon_render",
                  help="Griffin-Lim phase recovery takes a few seconds per spectrogram the first time; then it is cached.")
seconds = b.select_slider("Length", [5, 10, 20, 30], value=10, key="recon_seconds", format_func=lambda s: f"first {s} s",
                          disabled=not render)
frames = min(report.width, int(seconds * config.sample_rate / config.hop_length))
items = [("Original file", lambda: st.audio(last["bytes"], format=last["mime"]) if row is None else ui.play_track(row["path"]))]
if render:
    items.append(("Original, via Griffin-Lim", lambda: ui.play_audio(
        ui.sonified(ctx, ("original", frames, *source_key), report.original_db[:, :frames]), config)))
    for r in report.all_rows:  # the PCA reference is keyed by the models it came with
        key = (r.model, *(ctx.version(n) for n in names), frames, *source_key)
        items.append((r.model, lambda key=key, r=r: ui.play_audio(ui.sonified(ctx, key, r.mel_db[:, :frames]), config)))
for start in range(0, len(items), 3):
    for cell, (label, play) in zip(st.columns(3), items[start : start + 3]):
        with cell:
            st.markdown(f"**{label}**")
            play()

# --- morph ------------------------------------------------------------------------------------
st.divider()
st.subheader("Morph between two tracks", anchor=False)
st.caption(
    "Both tracks are encoded; the decoder then walks the straight line between their latents, one ~3 s "
    "segment per step, from A to B."
)
ids = frame["id"].tolist()
m1, m2, m3 = st.columns([2, 2, 1])
a_id = m1.selectbox("From track A", ids, format_func=track_name, key="morph_a")
a_cluster = frame.loc[frame["id"] == a_id, "cluster"].iloc[0]
default_b = next((i for i, c in zip(ids, frame["cluster"]) if c != a_cluster), ids[-1])
b_id = m2.selectbox("To track B", ids, index=ids.index(default_b), format_func=track_name, key="morph_b")
morph_model = m3.selectbox("Model", ctx.models, index=ctx.models.index(ctx.model), key="morph_model")
steps = st.slider("Steps", 2, 32, 8, key="morph_steps")
try:
    walk = ui.morph(ctx, morph_model, a_id, b_id, steps)
except MusiclustError as exc:
    st.error(f"{morph_model} could not morph these tracks: {ui.md(exc)}")
    st.stop()
if walk.label is not None:
    st.info(f"**{morph_model}** is conditioned on the group label: every step is decoded with track A's label, "
            f"{ui.describe_label(walk.label, morph_model)}.", icon=":material/label:")
st.plotly_chart(ui.morph_figure(walk, config), key="morph_fig")
st.caption(f"{steps} steps of {walk.segment_seconds:.1f} s; dotted lines mark each step.")
if st.toggle("Render the morph as audio", value=False, key="morph_render",
             help="Griffin-Lim phase recovery: a few seconds per step the first time; then it is cached."):
    ui.play_audio(ui.sonified(ctx, ("morph", morph_model, ctx.version(morph_model), a_id, b_id, steps), walk.mel_db), config)
pa, pb = st.columns(2)
for column, letter, track in ((pa, "A", a_id), (pb, "B", b_id)):
    r = frame.loc[frame["id"] == track].iloc[0]
    with column:
        st.markdown(f"**{letter}:** " + ui.track_line(r["title"], r["artist"], r["group"]))
        ui.play_track(r["path"])
