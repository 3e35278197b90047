"""Your track: upload a recording (and its lyrics) and see where it lands in the collection."""

import time

import streamlit as st

import musiclust_app as ui
from musiclust.service import MusiclustError, model_catalogue

KEEP_ANALYSES = 6
CATALOGUE = model_catalogue()
LYRIC_MODELS = [m.name for m in CATALOGUE if m.uses_lyrics]
AUDIO_ALONE_WITHOUT_LYRICS = [m.name for m in CATALOGUE if m.uses_lyrics and not m.joins_lyrics]

ctx = ui.page_context()
st.title("Your track")
st.caption(
    "Upload a recording and, if it has any, its lyrics. The model places it in a cluster, on the map of the "
    "collection and beside its five nearest tracks. Nothing you upload is stored."
)

if ui.waiting_for_first_model(ctx):  # the first run's progress panel above says why
    st.stop()
if not ui.require_trained(ctx):
    st.stop()

left, right = st.columns([3, 2])
with left:
    upload = st.file_uploader(
        "Audio file (WAV, FLAC, OGG or MP3)", type=ui.UPLOAD_TYPES, max_upload_size=ui.MAX_UPLOAD_MB, key="upload",
        help=ui.EXCERPT_HELP,
    )
with right:
    lyrics = st.text_area(
        "Lyrics (optional)", key="lyrics", height=122, max_chars=20_000, placeholder="Paste the words, if the track has any",
        help=f"Read by the models that use lyrics ({', '.join(LYRIC_MODELS)}); the others place the track by its audio alone.",
    )

if upload is None:
    st.info("Upload a file to see its cluster, its place on the map and its nearest neighbours.", icon=":material/upload:")
    ui.warm_model(ctx)  # loaded while a file is chosen
    st.stop()

model = ui.require_model(ctx)
if model is None:
    st.stop()

data = upload.getvalue()
digest = ui.file_digest(data)
key = (digest, ui.file_digest(lyrics.encode()), ctx.dataset, ctx.model, model.version)
analyses = st.session_state.setdefault("_analyses", {})
if key not in analyses:
    started = time.perf_counter()
    try:
        with st.spinner("Listening…"):
            answer = ctx.service.analyse(ctx.model, data, lyrics or None)
    except MusiclustError as exc:
        st.error(f"{ui.md(upload.name)} could not be analysed: {ui.md(exc)}", icon=":material/error:")
        st.stop()
    seconds = time.perf_counter() - started
    shown, step = ui.display_mel(answer.features.mel_db)  # what a screen can show: ~480 columns, not 1,292
    config = model.feature_config
    mel_chart = ui.mel_image_spec(shown, ui.replace(config, hop_length=config.hop_length * step), height=320)
    analyses[key] = (answer, seconds, mel_chart)  # built once per upload, not on every rerun
    while len(analyses) > KEEP_ANALYSES:
        analyses.pop(next(iter(analyses)))
answer, seconds, mel_chart = analyses[key]
placement = answer.placement
st.session_state["last_upload"] = {
    "name": upload.name, "digest": digest, "bytes": data, "mime": upload.type or "audio/wav",
    "mel_db": answer.features.mel_db, "lyrics": lyrics or None, "cluster": placement.cluster, "model": ctx.model,
    "dataset": ctx.dataset,
}

frame = ui.tracks_of(ctx)
c = placement.cluster
ratio = placement.distance_to_centre / placement.cluster_median_distance if placement.cluster_median_distance > 0 else 1.0
if ratio <= 0.8:
    fit = "closer to its centre than most of its members: a typical track of this cluster"
elif ratio <= 1.25:
    fit = "about as close to its centre as a typical member"
else:
    fit = "further from its centre than most members: a borderline fit"

st.success(f"{ui.md(upload.name)} lands in cluster {c}, {fit}.", icon=":material/check_circle:")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Cluster", c)
m2.metric("Distance to centre", f"{placement.distance_to_centre:.2f}", help="In the model's standardised latent space")
m3.metric("Cluster median distance", f"{placement.cluster_median_distance:.2f}", help="Median over the cluster's members")
m4.metric("Answered in", f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s")
if lyrics.strip() and not placement.used_lyrics:
    st.caption(f"{ctx.model} places tracks by their audio alone: the lyrics were not used. "
               f"Pick {' or '.join(LYRIC_MODELS)} to use them.")
elif placement.used_lyrics:
    st.caption("Placed by its audio and its lyrics.")
elif model.reads_no_lyrics_as_no_words:
    st.caption(
        f"{ctx.model} reads a track given without lyrics as one without words (instrumental). If yours has words, "
        f"paste them, or pick {' or '.join(AUDIO_ALONE_WITHOUT_LYRICS)}, which places a track without lyrics by its audio alone."
    )

map_col, card_col = st.columns([3, 2])
with map_col:
    st.subheader("On the map")
    st.caption("The collection's UMAP map coloured by cluster; the star is your track.")
    ui.draw_upload_map(ctx, placement.coords, key="upload_map")
with card_col:
    st.subheader(f"Cluster {c}")
    ui.cluster_card(ctx, c, key="upload_card")

st.subheader("Five nearest tracks")
st.caption("Nearest in the model's latent space (smaller distance = more alike). Play them to compare: each "
           "player plays what the model heard of that track (a compact preview, once it has been made).")
clusters = dict(zip(frame["id"], frame["cluster"]))
for n in placement.neighbours:
    text, player = st.columns([2, 3], vertical_alignment="center")
    text.markdown(f"{ui.track_line(n.title, n.artist, n.group)}  \ncluster {clusters.get(n.id, '?')} · distance {n.distance:.2f}")
    with player:
        ui.play_track(n.path, preview=model.feature_config)

st.subheader("Its mel spectrogram")
st.caption(f"Log-mel power in dB of the {answer.features.duration:.0f} s the model heard.")
st.vega_lite_chart(mel_chart, width="stretch", key="upload_mel")
if lyrics.strip():
    with st.expander("The lyrics you gave"):
        st.text(lyrics)
