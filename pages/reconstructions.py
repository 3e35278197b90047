"""Reconstructions: what each trained model keeps of a track, seen and heard; and a morph between two tracks."""

import html

import numpy as np
import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

import app_support as ui
from musiclust.errors import MusiclustError

ctx = ui.page_context()
st.title("Reconstructions")
st.caption(
    "A track's log-mel spectrogram beside each trained model's reconstruction, on one dB colour scale, with the "
    "reconstruction error. Spectrograms have no phase, so the audio is rendered back with Griffin-Lim: the "
    "original goes through the same rendering, so you compare like with like."
)

bundle = ui.require_model(ctx)
if bundle is None:
    st.stop()
frame = ui.tracks_of(ctx)
config = bundle.feature_config
last = st.session_state.get("last_upload")
if last and last.get("dataset") != ctx.dataset:
    last = None


names_by_id = dict(zip(frame["id"], frame["title"].astype(str) + " · " + frame["group"].astype(str)
                       + np.where(frame["artist"].astype(bool), " · " + frame["artist"].astype(str), "")))


def track_name(track_id: str) -> str:
    return names_by_id.get(track_id, track_id)


# --- which track ------------------------------------------------------------------------------
sources = ["A collection track"] + (["Your last upload"] if last else [])
source = st.segmented_control("Track", sources, default=sources[0], key="recon_source") or sources[0]
if source == "Your last upload":
    source_key = ("upload", last["digest"])
    mel = last["mel_db"]
    title = last["name"]
    group, own_cluster = None, None
else:
    track_id = st.selectbox("Collection track", frame["id"].tolist(), format_func=track_name, key="recon_track")
    row = frame.loc[frame["id"] == track_id].iloc[0]
    source_key = ("track", track_id)
    mel = ui.mel_of(bundle, row["path"])
    title = row["title"]
    group = row["group"]

names = st.multiselect("Models", ctx.models, default=ctx.models, key="recon_models")
if not names:
    st.info("Pick at least one model.")
    st.stop()

recons, notes, errors = {}, {}, []
for name in list(names):
    try:
        b = ctx.bundle(name)
    except MusiclustError as exc:
        st.warning(f"{name} could not be loaded and is left out: {ui.md(exc)}")
        names.remove(name)
        continue
    label, note = None, None
    if b.conditioned_on_label:
        if source_key[0] == "track":
            cluster = int(b.labels[b.row(source_key[1])])
            label, note = ui.label_for_track(b, group, cluster)
        else:
            cluster = ui.upload_cluster((ctx.dataset, name, ctx.version(name), last["digest"]), b, mel, last.get("lyrics"))
            label = b.default_label(cluster)
            note = f"“{b.label_names[label]}”, the majority group of cluster {cluster}, where {name} places your upload"
        notes[name] = note
    recon = ui.reconstruction((ctx.dataset, name, ctx.version(name), *source_key), b, mel, label)
    width = min(recon.shape[1], mel.shape[1])
    recons[name] = recon[:, :width]
    errors.append({"model": name, "reconstruction MSE (dB²)": float(np.mean((recon[:, :width] - mel[:, :width]) ** 2)),
                   "decoder label": notes.get(name, "none (not conditioned)")})

for name, note in notes.items():
    st.info(f"**{name}** is conditioned on the group label: its decoder was given {ui.md(note)}.", icon=":material/label:")

if not recons:
    st.stop()
width = min(r.shape[1] for r in recons.values())
original = mel[:, :width]
zmin, zmax = ui.db_range(original, *recons.values())
rows = ["original"] + names
fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                    subplot_titles=[f"original · {html.escape(str(title))}"] +
                                   [f"{n} · MSE {e['reconstruction MSE (dB²)']:.1f} dB²" for n, e in zip(names, errors)])
for i, m in enumerate([original] + [recons[n] for n in names], start=1):
    fig.add_trace(ui.mel_trace(m, config, coloraxis="coloraxis"), row=i, col=1)
_, ticks, labels = ui.mel_axis(config, width)
fig.update_yaxes(tickvals=ticks, ticktext=labels)
fig.update_xaxes(title_text="time (s)", row=len(rows), col=1)
fig.update_layout(height=60 + 200 * len(rows), margin=dict(l=10, r=10, t=40, b=10),
                  coloraxis=dict(colorscale=ui.MEL_COLOURSCALE, cmin=zmin, cmax=zmax, colorbar=dict(title="dB")))
st.plotly_chart(fig, key="recon_fig")
if "conv_vae_fusion" in names:
    st.caption("conv_vae_fusion reuses conv_vae's network and joins the lyrics after the encoder, so it reconstructs "
               "exactly as conv_vae does when both come from the same training run.")
st.dataframe(pd.DataFrame(errors), hide_index=True, column_config={
    "reconstruction MSE (dB²)": st.column_config.NumberColumn(format="%.1f")})

# --- listening --------------------------------------------------------------------------------
st.subheader("Listen", anchor=False)
st.caption("The real file; the original spectrogram rendered with Griffin-Lim; then each reconstruction rendered the same way.")
a, b = st.columns([2, 1])
render = a.toggle("Render the spectrograms as audio", value=False, key="recon_render",
                  help="Griffin-Lim phase recovery takes a few seconds per spectrogram the first time; then it is cached.")
seconds = b.select_slider("Length", [5, 10, 20, 30], value=10, key="recon_seconds", format_func=lambda s: f"first {s} s",
                          disabled=not render)
frames = min(width, int(seconds * config.sample_rate / config.hop_length))
items = [("Original file", lambda: st.audio(last["bytes"], format=last["mime"]) if source_key[0] == "upload" else ui.play_file(row["path"]))]
if render:
    items.append(("Original, via Griffin-Lim",
                  lambda: ui.play_array(ui.sonified((ctx.dataset, "original", frames, *source_key), original[:, :frames], config), config)))
    for name in names:
        key = (ctx.dataset, name, ctx.version(name), frames, *source_key)
        items.append((name, lambda key=key, name=name: ui.play_array(ui.sonified(key, recons[name][:, :frames], config), config)))
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
    mb = ctx.bundle(morph_model)
except MusiclustError as exc:
    st.error(f"{morph_model} could not be loaded: {ui.md(exc)}")
    st.stop()
row_a = frame.loc[frame["id"] == a_id].iloc[0]
row_b = frame.loc[frame["id"] == b_id].iloc[0]
mel_a, mel_b = ui.mel_of(bundle, row_a["path"]), ui.mel_of(bundle, row_b["path"])
label = None
if mb.conditioned_on_label:
    label, note = ui.label_for_track(mb, row_a["group"], int(mb.labels[mb.row(a_id)]))
    st.info(f"**{morph_model}** is conditioned on the group label: every step is decoded with track A's label, {ui.md(note)}.",
            icon=":material/label:")
walk = ui.morphed((ctx.dataset, morph_model, ctx.version(morph_model), a_id, b_id, steps), mb, mel_a, mel_b, steps, label)
morph_fig = ui.mel_figure(walk, config, height=300)
seg = config.segment_frames * config.hop_length / config.sample_rate
for s in range(1, steps):
    morph_fig.add_vline(x=s * seg, line=dict(color="white", width=1, dash="dot"))
st.plotly_chart(morph_fig, key="morph_fig")
st.caption(f"{steps} steps of {seg:.1f} s; dotted lines mark each step.")
if st.toggle("Render the morph as audio", value=False, key="morph_render",
             help="Griffin-Lim phase recovery: a few seconds per step the first time; then it is cached."):
    ui.play_array(ui.sonified((ctx.dataset, "morph", morph_model, ctx.version(morph_model), a_id, b_id, steps), walk, config), config)
pa, pb = st.columns(2)
with pa:
    st.markdown("**A:** " + ui.track_line(row_a["title"], row_a["artist"], row_a["group"]))
    ui.play_file(row_a["path"])
with pb:
    st.markdown("**B:** " + ui.track_line(row_b["title"], row_b["artist"], row_b["group"]))
    ui.play_file(row_b["path"])
