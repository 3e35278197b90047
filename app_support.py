"""Streamlit helpers shared by ``app.py`` and the pages: where things are, cached models and tables,
the retrain panel, and the figures. Streamlit-only: the core package ``musiclust`` never imports this.

Configuration comes from the environment so tests (and people) can point the app elsewhere:
``MUSICLUST_DATA`` (the data set shown first, default ``default``), ``MUSICLUST_CHECKPOINTS``
(the checkpoints root, default ``checkpoints/``) and ``MUSICLUST_JOBS`` (retrain job state,
default ``data/jobs/``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import html
import io
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from musiclust.config import FeatureConfig
from musiclust.errors import JobBusyError, MusiclustError
from musiclust.serving.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStatus, RetrainJobs
from musiclust.service import Service, dataset_slug

REPO = Path(__file__).resolve().parent
MODEL_ORDER = ("mvae_poe", "conv_vae_fusion", "conv_vae", "beta_cvae", "basic_vae")
MODEL_BLURB = {
    "basic_vae": "fully connected VAE on log-mel segments (audio only)",
    "conv_vae": "convolutional VAE on log-mel segments (audio only)",
    "conv_vae_fusion": "convolutional VAE latent joined with reduced lyrics TF-IDF (hybrid fusion; no lyrics = no words)",
    "mvae_poe": "multimodal VAE, product of experts: audio and lyrics, lyrics optional",
    "beta_cvae": "β-VAE whose decoder is conditioned on the group label",
}
TRAIN_COMMAND = "python -m musiclust train"
UPLOAD_TYPES = ["wav", "flac", "ogg", "mp3"]
AUDIO_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}
MAX_UPLOAD_MB = 50
CLUSTER_COLOURS = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D", "#FF9DA6", "#BAB0AC",
    "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF", "#AEC7E8",
)
MEL_COLOURSCALE = "Magma"


# --- where things are ------------------------------------------------------------------------
def checkpoints_root() -> Path:
    return Path(os.environ.get("MUSICLUST_CHECKPOINTS") or REPO / "checkpoints").resolve()


def initial_dataset() -> str:
    return os.environ.get("MUSICLUST_DATA") or "default"


def jobs_dir() -> Path:
    return Path(os.environ.get("MUSICLUST_JOBS") or REPO / "data" / "jobs").resolve()


def dataset_label(spec: str) -> str:
    if spec in ("default", "default:natural"):
        return "Default set (natural instruments)"
    if spec == "default:piano":
        return "Default set, all piano (one timbre)"
    return spec


def dataset_options() -> list[str]:
    """The data sets offered in the sidebar: the configured one (``MUSICLUST_DATA``), the default set and
    its all-piano variant when rendered or trained (a folder or CSV is typed in)."""
    options = [initial_dataset(), "default"]
    if (REPO / "data" / "default" / "piano").is_dir() or (checkpoints_root() / dataset_slug("default:piano")).is_dir():
        options.append("default:piano")
    return list(dict.fromkeys(options))


# --- cached resources --------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def get_service(dataset: str, root: str) -> Service:
    return Service(dataset, Path(root))


@st.cache_resource(show_spinner="Loading the model…", max_entries=16)
def load_bundle(dataset: str, root: str, name: str, version: str):
    """One model of one data set, loaded once per checkpoint version (a retrain's version is a new key)."""
    return get_service(dataset, root).bundle(name)


@st.cache_resource(show_spinner=False)
def _prewarm(dataset: str, root: str, name: str, version: str) -> threading.Thread:
    """Load a model and push a short synthetic signal through the upload path in a background thread
    (plain Python: no Streamlit calls), so the first real upload skips the libraries' one-off start-up."""
    service = get_service(dataset, root)

    def work() -> None:
        try:
            bundle = service.bundle(name)
            service.analyse(name, _warm_up_wav(bundle.feature_config.sample_rate), None, n_neighbours=1)
        except Exception:  # noqa: BLE001 - a failed warm-up only means the first upload is slower
            pass

    thread = threading.Thread(target=work, name=f"musiclust-prewarm-{name}", daemon=True)
    thread.start()
    return thread


def prewarm(ctx: "Context") -> None:
    if ctx.model:
        _prewarm(ctx.dataset, str(ctx.root), ctx.model, ctx.version())


def _warm_up_wav(sample_rate: int) -> bytes:
    import soundfile

    noise = np.random.default_rng(0).normal(0.0, 0.05, int(3.2 * sample_rate)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, noise, sample_rate, format="WAV")
    return buffer.getvalue()


@st.cache_resource(show_spinner=False)
def get_jobs(state_dir: str, repo_root: str) -> RetrainJobs:
    return RetrainJobs(state_dir=Path(state_dir), repo_root=Path(repo_root))


def jobs() -> RetrainJobs:
    return get_jobs(str(jobs_dir()), str(REPO))


@dataclass
class Context:
    """What the sidebar chose: the data set, its trained models and the model in use."""

    dataset: str
    root: Path
    models: list[str]
    model: Optional[str]

    @property
    def service(self) -> Service:
        return get_service(self.dataset, str(self.root))

    def version(self, name: Optional[str] = None) -> str:
        return self.service.version(name or self.model)

    def bundle(self, name: Optional[str] = None):
        name = name or self.model
        return load_bundle(self.dataset, str(self.root), name, self.version(name))


def preferred_model(models: list[str]) -> Optional[str]:
    for name in MODEL_ORDER:
        if name in models:
            return name
    return models[0] if models else None


def context() -> Context:
    """The sidebar's choices (or the defaults when a page runs on its own)."""
    dataset = st.session_state.get("_dataset") or initial_dataset()
    root = checkpoints_root()
    try:
        models = get_service(dataset, str(root)).models()
    except MusiclustError:
        models = []
    model = st.session_state.get("model_choice")
    if model not in models:
        model = preferred_model(models)
    return Context(dataset, root, models, model)


def require_trained(ctx: Context) -> bool:
    """True when the data set has a trained model; otherwise say what to run and offer the retrain."""
    if ctx.model is None:
        st.info(
            f"No trained model for **{md(dataset_label(ctx.dataset))}** yet. Train the models from a terminal with "
            f"`{TRAIN_COMMAND}`" + (f" `--data {ctx.dataset.replace('`', '')}`" if ctx.dataset != "default" else "")
            + ", or start a retrain here (it runs in the background; progress shows in the sidebar)."
        )
        if st.button("Train the models now", key="empty_state_train", type="primary"):
            start_retrain(ctx, train_args(ctx, ["all"]))
            refused = st.session_state.pop("_retrain_refused", None)
            if refused:
                st.warning(refused)
            else:
                st.rerun()
        return False
    return True


def require_model(ctx: Context):
    """The selected model's bundle, or an explanation (and a retrain button) when there is none."""
    if not require_trained(ctx):
        return None
    try:
        bundle = ctx.bundle()
    except MusiclustError as exc:
        st.error(f"The model {ctx.model} could not be loaded: {md(exc)}")
        return None
    reason = bundle.meta.get("fallback_reason")
    if reason:
        st.warning(f"The newest version of {ctx.model} could not be loaded, so the previous version is in use: {md(reason)}")
    return bundle


# --- retrain -----------------------------------------------------------------------------------
def train_args(ctx: Context, models: list[str], epochs: Optional[int] = None, latent: Optional[int] = None,
               beta: Optional[float] = None, k: Optional[int] = None, seed: Optional[int] = None) -> list[str]:
    args = ["--data", ctx.dataset, "--models", ",".join(models), "--checkpoints", str(ctx.root)]
    for flag, value in (("--epochs", epochs), ("--latent-dim", latent), ("--beta", beta), ("--k", k), ("--seed", seed)):
        if value is not None:
            args += [flag, str(value)]
    return args


def start_retrain(ctx: Context, args: list[str]) -> None:
    try:
        jobs().start(args)
    except JobBusyError as exc:
        st.session_state["_retrain_refused"] = str(exc)
    except MusiclustError as exc:
        st.session_state["_retrain_refused"] = f"The retrain could not start: {exc}"
    else:
        st.session_state.pop("_retrain_refused", None)


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_text(status: JobStatus) -> str:
    if not status.model:
        return status.message or "starting…"
    parts = [f"{status.model} ({status.model_index + 1}/{status.n_models})"]
    n_epochs = status.n_epochs or _arg(status.args, "--epochs")
    if n_epochs:
        parts.append(f"epoch {status.epoch}/{n_epochs}")
    if status.loss is not None:
        parts.append(f"loss {status.loss:.4g}")
    parts.append(f"{format_seconds(status.seconds_left)} left")
    return " · ".join(parts)


def notice_finished_jobs() -> None:
    """Clear the cached models and tables once per session when a retrain is seen to have succeeded.

    Models are also keyed by checkpoint version, so a new version is picked up regardless; clearing
    frees the old ones and refreshes every cached table."""
    status = jobs().status()
    seen_now = (status.job_id, status.state)
    seen = st.session_state.get("_job_seen")
    if seen is None:
        st.session_state["_job_seen"] = seen_now
        return
    if seen_now != seen:
        st.session_state["_job_seen"] = seen_now
        if status.state == SUCCEEDED:
            st.cache_resource.clear()
            st.cache_data.clear()
            st.session_state["_job_switched"] = status.job_id


def job_panel() -> None:
    """The retrain's state: a live progress bar while it runs, the outcome once it ended."""
    status = jobs().status()
    if status.state == RUNNING:
        _job_progress()
    elif status.state == SUCCEEDED:
        when = time.strftime("%H:%M", time.localtime(status.finished_at)) if status.finished_at else ""
        st.success(f"Last retrain finished {when}: {md(status.message)}. The new models are in use.")
    elif status.state == CANCELLED:
        st.warning(f"Last retrain cancelled: {md(_reason(status.message, 'cancelled'))}", icon=":material/cancel:")
    elif status.state == FAILED:
        st.error(f"Last retrain failed: {md(_reason(status.message, 'failed'))}", icon=":material/error:")


def _reason(message: str, state: str) -> str:
    message = (message or "no reason given").strip()
    return message[len(state) + 1 :].strip() if message.lower().startswith(state + ":") else message


@st.fragment(run_every=1)
def _job_progress() -> None:
    status = jobs().status()
    if status.state != RUNNING:
        st.rerun()  # the whole app: caches are refreshed and the outcome shown
    st.progress(status.fraction, text=f"Retraining: {progress_text(status)}")
    st.caption(f"Data set: {md(dataset_label(_arg(status.args, '--data') or '?'))} · started {format_seconds(time.time() - status.started_at)} ago")
    if st.button("Cancel retrain", key="cancel_retrain"):
        jobs().cancel()
        st.toast("Cancelling: the run stops at its next batch; the current models stay in use.")


def _arg(args: list, flag: str) -> Optional[str]:
    try:
        return str(args[args.index(flag) + 1])
    except (ValueError, IndexError):
        return None


# --- the shell: sidebar on every page -------------------------------------------------------------
OTHER = "__other__"


def choose_dataset() -> str:
    options = dataset_options() + [OTHER]
    choice = st.selectbox(
        "Data set",
        options,
        key="dataset_choice",
        format_func=lambda o: "A music folder or CSV manifest…" if o == OTHER else dataset_label(o),
        help="The default set is rendered on this machine; a folder uses sub-folders as groups (GTZAN layout); "
        "a CSV needs a 'path' column (optional: title, artist, genre, lyrics).",
    )
    if choice != OTHER:
        return choice
    typed = st.text_input("Folder or CSV path", key="dataset_path", placeholder="/music/gtzan or /music/list.csv").strip()
    if not typed:
        st.caption("Type the path of a folder of audio files or of a CSV manifest.")
        return st.session_state.get("_dataset") or initial_dataset()
    path = Path(typed).expanduser()
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".csv")):
        st.error(f"No folder or .csv file at {md(typed)}")
        return st.session_state.get("_dataset") or initial_dataset()
    return str(path.resolve())


def choose_model(ctx: Context) -> None:
    if not ctx.models:
        st.warning(f"No trained model for this data set yet: run `{TRAIN_COMMAND}` or retrain below.")
        return
    if st.session_state.get("model_choice") not in ctx.models:
        st.session_state.pop("model_choice", None)
    st.selectbox(
        "Model",
        ctx.models,
        index=ctx.models.index(preferred_model(ctx.models)),
        key="model_choice",
        help="Every trained model of this data set. The pages place tracks, draw the map and score with this one.",
    )
    name = st.session_state["model_choice"]
    st.caption(f"{MODEL_BLURB.get(name, '')} · version `{ctx.version(name)}`")


def retrain_form(ctx: Context) -> None:
    from musiclust.pipeline import MODEL_NAMES, Settings
    from musiclust.models.training import TrainConfig

    defaults = Settings()
    default_epochs = int(defaults.epochs or TrainConfig().epochs)
    with st.expander("Retrain models", expanded=False, icon=":material/model_training:"):
        with st.form("retrain_form", border=False):
            models = st.multiselect("Models", list(MODEL_NAMES), default=[ctx.model] if ctx.model else list(MODEL_NAMES),
                                    key="retrain_models")
            a, b = st.columns(2)
            epochs = a.number_input("Epochs", 1, 1000, default_epochs, key="retrain_epochs",
                                    help="At most this many; training stops early when the validation loss stops improving")
            latent = b.number_input("Latent size", 2, 512, defaults.latent_dim, key="retrain_latent")
            beta = a.number_input("β (beta_cvae)", 0.0, 100.0, float(defaults.beta), step=0.5, key="retrain_beta")
            k = b.number_input("Clusters k", 0, 200, 0, help="0 = one cluster per group", key="retrain_k")
            seed = a.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="retrain_seed")
            submitted = st.form_submit_button("Start retrain", type="primary", width="stretch", key="retrain_start")
        st.caption(f"Runs `{TRAIN_COMMAND}` in the background on {md(dataset_label(ctx.dataset))}; "
                   "the current models stay in use until it succeeds.")
        if submitted:
            if not models:
                st.warning("Pick at least one model to retrain.")
                return
            args = train_args(ctx, models, int(epochs), int(latent), float(beta), int(k) or None, int(seed))
            start_retrain(ctx, args)
            refused = st.session_state.pop("_retrain_refused", None)
            if refused:
                st.warning(refused, icon=":material/block:")
            else:
                st.rerun()


_SHELL_RUNS: "weakref.WeakSet" = weakref.WeakSet()


def _run_token():
    """An object unique to the current script run (Streamlit makes a fresh coordinator per run)."""
    try:
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        ctx = get_script_run_ctx()
        return ctx.parallel_coordinator if ctx is not None else None
    except (ImportError, AttributeError, TypeError):
        return None


def shell() -> None:
    """The shared sidebar (data set, model, retrain) and the retrain outcome; ``app.py`` draws it before each page."""
    notice_finished_jobs()
    with st.sidebar:
        st.session_state["_dataset"] = choose_dataset()
        choose_model(context())
        retrain_form(context())
        job_panel()
    if st.session_state.pop("_job_switched", None):
        st.toast("The retrained models are now in use.", icon=":material/check_circle:")
    token = _run_token()
    if token is not None:
        _SHELL_RUNS.add(token)
    st.session_state.pop("_mpa_rerun", None)


def page_context() -> Context:
    """A page's starting point: the sidebar's choices.

    Because the pages live in ``pages/``, Streamlit 1.67 starts in its old "pages directory" mode until
    ``st.navigation`` has run once in the process: a fresh server's first request for a page URL (and
    every AppTest run after ``switch_page``) runs the page file alone, without ``app.py``. The page then
    switches that mode off (what ``st.navigation`` itself does) and reruns, so ``app.py`` routes and draws
    the sidebar; under AppTest, or should that not help, the page draws the sidebar itself."""
    token = _run_token()
    if token is not None and token not in _SHELL_RUNS:
        if not _under_app_test() and not st.session_state.get("_mpa_rerun") and _leave_pages_directory_mode():
            st.session_state["_mpa_rerun"] = True
            st.rerun()
        st.session_state.pop("_mpa_rerun", None)
        st.set_page_config(page_title="musiclust", page_icon=":material/graphic_eq:", layout="wide")
        with _as_main_script():  # the sidebar's widgets keep the identity (and state) app.py gives them
            shell()
    return context()


def _under_app_test() -> bool:
    """AppTest resets the mode before each of its runs (a rerun would only drop the run's button clicks)."""
    from streamlit import config

    return bool(config.get_option("global.appTest"))


def _leave_pages_directory_mode() -> bool:
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return False
    PagesManager.uses_pages_directory = False
    return True


@contextlib.contextmanager
def _as_main_script():
    try:
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        ctx = get_script_run_ctx()
        scope = ctx.run_with_active_hash(ctx.pages_manager.main_script_hash)
    except (ImportError, AttributeError, TypeError):
        scope = contextlib.nullcontext()
    with scope:
        yield


# --- tables ------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def track_table(dataset: str, root: str, name: str, version: str) -> pd.DataFrame:
    """The collection as a table: id, title, artist, group, cluster, map x/y, path."""
    bundle = load_bundle(dataset, root, name, version)
    frame = pd.DataFrame(bundle.tracks)
    for column in ("artist", "group"):
        if column not in frame:
            frame[column] = None
    frame["group"] = frame["group"].fillna("unknown")
    frame["artist"] = frame["artist"].fillna("")
    frame["cluster"] = np.asarray(bundle.labels, dtype=int)
    frame["x"] = bundle.coords[:, 0]
    frame["y"] = bundle.coords[:, 1]
    for column in ("title", "artist", "group"):  # hover text, escaped once here rather than per figure
        frame[f"{column}_html"] = [html.escape(str(v)) for v in frame[column]]
    return frame[["id", "title", "artist", "group", "cluster", "x", "y", "path", "title_html", "artist_html", "group_html"]]


def tracks_of(ctx: Context, name: Optional[str] = None) -> pd.DataFrame:
    name = name or ctx.model
    return track_table(ctx.dataset, str(ctx.root), name, ctx.version(name))


@st.cache_data(show_spinner="Computing the spectrogram…", max_entries=64)
def collection_mel(path: str, fingerprint: str, _config: FeatureConfig) -> np.ndarray:
    """Log-mel (dB) of a collection track, computed by the core and cached."""
    from musiclust.features.mel import compute_features

    return compute_features(Path(path), _config).mel_db


def mel_of(bundle, path: str) -> np.ndarray:
    return collection_mel(path, bundle.feature_config.fingerprint(), bundle.feature_config)


@st.cache_data(show_spinner="Rendering audio from the spectrogram (Griffin-Lim)…", max_entries=64)
def sonified(key: tuple, _mel_db: np.ndarray, _config: FeatureConfig) -> np.ndarray:
    """Audio from a dB log-mel; ``key`` names what the mel is (track, model, version) for the cache."""
    from musiclust.service import sonify

    return sonify(_mel_db, _config)


def label_for_track(bundle, group: Optional[str], cluster: int) -> tuple[int, str]:
    """The label a conditioned decoder gets for a collection track: its own group when known."""
    if group in bundle.label_names:
        return bundle.label_names.index(group), f"its group, “{group}”"
    label = bundle.default_label(cluster)
    return label, f"“{bundle.label_names[label]}”, the majority group of its cluster {cluster} (its own group is unknown)"


# --- playback ----------------------------------------------------------------------------------
def play_file(path: str) -> None:
    p = Path(path)
    if not p.is_file():
        st.caption(f"(audio file missing: {md(p.name)})")
        return
    st.audio(str(p), format=AUDIO_MIME.get(p.suffix.lower(), "audio/wav"))


def play_array(audio: np.ndarray, config: FeatureConfig) -> None:
    st.audio(np.asarray(audio, dtype=np.float32), sample_rate=config.sample_rate)


# --- playlists ---------------------------------------------------------------------------------
def m3u_playlist(rows: pd.DataFrame) -> str:
    lines = ["#EXTM3U"]
    for title, artist, path in zip(rows["title"], rows["artist"], rows["path"]):
        name = f"{artist} - {title}" if artist else str(title)
        lines.append(f"#EXTINF:-1,{' '.join(name.splitlines())}")
        lines.append(str(Path(path).resolve()))
    return "\n".join(lines) + "\n"


def csv_playlist(rows: pd.DataFrame) -> str:
    out = io.StringIO()
    frame = rows[["id", "title", "artist", "group", "cluster", "path"]].copy()
    frame["path"] = [str(Path(p).resolve()) for p in frame["path"]]
    frame.to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
    return out.getvalue()


def playlist_buttons(rows: pd.DataFrame, stem: str, key: str) -> None:
    a, b = st.columns(2)
    a.download_button("Download M3U playlist", m3u_playlist(rows), file_name=f"{stem}.m3u", mime="audio/x-mpegurl",
                      key=f"{key}_m3u", width="stretch", icon=":material/queue_music:")
    b.download_button("Download CSV", csv_playlist(rows), file_name=f"{stem}.csv", mime="text/csv",
                      key=f"{key}_csv", width="stretch", icon=":material/table:")


# --- figures -----------------------------------------------------------------------------------
def marker_size(n: int) -> int:
    """Points big enough to click in a small collection, small enough to see structure in a large one."""
    return 10 if n < 300 else 7 if n < 1500 else 5 if n < 5000 else 3


def colour_for(i: int) -> str:
    return CLUSTER_COLOURS[i % len(CLUSTER_COLOURS)]


# Above this many points the map draws a seeded sample of them over a density layer of all of them. In
# headless Chromium with software WebGL (benchmark figure 5) 10,000 points drew in 2.8 s and panned at
# 55 ms a step (smooth: within 33 ms of the 490-point map), 100,000 took 5.7 s and 228 ms a step.
MAP_MAX_POINTS = 10_000
DENSITY_BINS = 120


def map_sample(frame: pd.DataFrame, max_points: Optional[int] = MAP_MAX_POINTS, seed: int = 0) -> pd.DataFrame:
    """The rows the map draws as points: all of them up to ``max_points``, else a seeded uniform sample
    (the same one on every rerun, so the chart and a clicked point stay put)."""
    if max_points is None or len(frame) <= max_points:
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_points, replace=False))
    return frame.iloc[rows]


def map_note(shown: int, total: int) -> Optional[str]:
    """What the page says when the map draws a sample; None when every track is a point."""
    if shown >= total:
        return None
    return f"showing {shown:,} of {total:,} tracks as points (a fixed random sample); the grey shading is the density of all {total:,}"


def density_trace(xs: np.ndarray, ys: np.ndarray, bins: int = DENSITY_BINS) -> go.Heatmap:
    """Every track of a large map as a 2-D histogram (``bins`` x ``bins`` counts, empty cells transparent):
    ~15k numbers to send whatever the collection's size. No ``customdata``, so a click on it selects no track."""
    counts, xe, ye = np.histogram2d(xs, ys, bins=bins)  # (bins, bins)
    z = np.where(counts > 0, np.log1p(counts), np.nan).T  # (y, x), log so sparse regions still show
    return go.Heatmap(
        x=(xe[:-1] + xe[1:]) / 2, y=(ye[:-1] + ye[1:]) / 2, z=z, text=counts.T.astype(int), colorscale="Greys",
        showscale=False, opacity=0.45, zsmooth=False, hovertemplate="%{text} tracks here<extra></extra>", name="density",
    )


def map_figure(frame: pd.DataFrame, colour_by: str = "cluster", marker_size: int = 6, height: int = 560,
               upload: Optional[tuple[float, float]] = None, upload_name: str = "your track",
               max_points: Optional[int] = MAP_MAX_POINTS) -> go.Figure:
    """The collection's UMAP map, one WebGL trace per colour (no per-point Python loop); ids in ``customdata``.

    Above ``max_points`` tracks it draws :func:`map_sample` over :func:`density_trace` of every track, says
    so in the figure (:func:`map_note`), and trims each point's hover data to its id and title (the group
    or cluster is the trace's name; a click shows the rest): at 100,000 tracks 83 % of the payload was
    per-point hover data."""
    total = len(frame)
    points = map_sample(frame, max_points)
    sampled = len(points) < total
    values = points[colour_by].to_numpy()
    columns = ["id", "title_html"] if sampled else ["id", "title_html", "artist_html", "group_html", "cluster"]
    custom = np.column_stack([points[c].to_numpy(dtype=object) for c in columns])  # (n, len(columns))
    hover = ("<b>%{customdata[1]}</b><extra>%{fullData.name}</extra>" if sampled else
             "<b>%{customdata[1]}</b><br>%{customdata[2]}<br>group: %{customdata[3]} · cluster %{customdata[4]}<extra></extra>")
    xs, ys = points["x"].to_numpy(), points["y"].to_numpy()
    fig = go.Figure()
    if sampled:
        fig.add_trace(density_trace(frame["x"].to_numpy(), frame["y"].to_numpy()))
    levels = sorted(pd.unique(values), key=lambda v: (isinstance(v, str), v))
    for i, level in enumerate(levels):
        mask = values == level
        name = f"cluster {level}" if colour_by == "cluster" else str(level)
        fig.add_trace(go.Scattergl(
            x=xs[mask], y=ys[mask], mode="markers", name=html.escape(name), customdata=custom[mask],
            marker=dict(size=marker_size, color=colour_for(int(level) if colour_by == "cluster" else i), opacity=0.8,
                        line=dict(width=0)),
            hovertemplate=hover,
        ))
    note = map_note(len(points), total)
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=1.0, yanchor="bottom", xanchor="left",
                           showarrow=False, font=dict(size=12, color="#555555"))
    if upload is not None:
        fig.add_trace(go.Scattergl(
            x=[upload[0]], y=[upload[1]], mode="markers+text", name=upload_name, text=[upload_name],
            textposition="top center", marker=dict(symbol="star", size=20, color="#111111", line=dict(width=2, color="white")),
            hovertemplate=f"<b>{html.escape(upload_name)}</b><extra></extra>",
        ))
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(itemsizing="constant", title_text=""),
        xaxis=dict(title="UMAP 1", showticklabels=False, zeroline=False),
        yaxis=dict(title="UMAP 2", showticklabels=False, zeroline=False), dragmode="pan",
    )
    return fig


def mel_axis(config: FeatureConfig, n_frames: int) -> tuple[np.ndarray, list[int], list[str]]:
    """Seconds per frame, and mel-band ticks labelled in Hz."""
    import librosa

    seconds = np.arange(n_frames) * config.hop_length / config.sample_rate
    hz = librosa.mel_frequencies(n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax)
    ticks = [int(i) for i in np.linspace(0, config.n_mels - 1, 6)]
    labels = [f"{hz[i] / 1000:.1f} kHz" if hz[i] >= 1000 else f"{hz[i]:.0f} Hz" for i in ticks]
    return seconds, ticks, labels


def mel_trace(mel_db: np.ndarray, config: FeatureConfig, coloraxis: Optional[str] = None, **kw) -> go.Heatmap:
    seconds, _, _ = mel_axis(config, mel_db.shape[1])
    extra = {"coloraxis": coloraxis} if coloraxis else {"colorscale": MEL_COLOURSCALE, "colorbar": dict(title="dB")}
    return go.Heatmap(z=mel_db.astype(np.float32), x=seconds, y=np.arange(mel_db.shape[0]),
                      hovertemplate="%{x:.2f} s · band %{y}<br>%{z:.1f} dB<extra></extra>", **extra, **kw)


def mel_figure(mel_db: np.ndarray, config: FeatureConfig, title: str = "", height: int = 300,
               zmin: Optional[float] = None, zmax: Optional[float] = None) -> go.Figure:
    _, ticks, labels = mel_axis(config, mel_db.shape[1])
    fig = go.Figure(mel_trace(mel_db, config, zmin=zmin, zmax=zmax))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      xaxis=dict(title="time (s)"), yaxis=dict(title="mel band", tickvals=ticks, ticktext=labels))
    return fig


def db_range(*mels: np.ndarray) -> tuple[float, float]:
    """One colour scale for several spectrograms: robust min/max over all of them."""
    values = np.concatenate([m.ravel() for m in mels])
    return float(np.percentile(values, 0.5)), float(np.percentile(values, 99.9))


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_MD_SPECIAL = set("\\`*_{}[]<>#|~$")


def md(text) -> str:
    """Text from files, people or error messages, safe inline in Markdown: emphasis, code, links, HTML,
    colour directives and maths cannot form (their characters are backslash-escaped)."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in " ".join(str(text).split()))


def track_line(title, artist, group) -> str:
    parts = [f"**{md(title)}**"]
    if artist:
        parts.append(md(artist))
    if group and group != "unknown":
        parts.append(f"_{md(group)}_")
    return " · ".join(parts)


def group_mix_figure(groups: dict, height: int = 180) -> go.Figure:
    names, counts = list(groups)[:8], list(groups.values())[:8]
    fig = go.Figure(go.Bar(x=counts[::-1], y=[html.escape(str(n)) for n in names][::-1], orientation="h",
                           marker_color="#4C78A8", hovertemplate="%{y}: %{x} tracks<extra></extra>"))
    fig.update_layout(height=max(120, 28 * len(names) + 40), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(title="tracks"), yaxis=dict(automargin=True))
    return fig


def cluster_card(bundle, cluster: int, frame: pd.DataFrame, key: str) -> None:
    """A cluster's size, group mix, top lyric terms and most typical track (playable)."""
    cards = bundle.meta.get("clusters") or []
    card = cards[cluster] if 0 <= cluster < len(cards) else None
    if card is None:
        st.caption("This checkpoint has no cluster description.")
        return
    st.markdown(f"{card.get('size', 0)} tracks · {card.get('with_lyrics', 0)} with lyrics")
    if card.get("groups"):
        st.plotly_chart(group_mix_figure(card["groups"]), key=f"{key}_mix", config={"displayModeBar": False})
    terms = card.get("top_terms") or []
    st.markdown("**Top lyric terms:** " + (", ".join(md(t) for t in terms) if terms else "_none (no lyrics in this cluster)_"))
    typical = card.get("typical_track")
    if typical is not None:
        rows = frame[frame["id"] == typical]
        if len(rows):
            r = rows.iloc[0]
            st.markdown("**Most typical track** (nearest the centre): " + track_line(r["title"], r["artist"], r["group"]))
            play_file(r["path"])


@st.cache_data(show_spinner="Reconstructing…", max_entries=128)
def reconstruction(key: tuple, _bundle, _mel_db: np.ndarray, label: Optional[int]) -> np.ndarray:
    """A model's reconstruction of a log-mel (dB); ``key`` = (data set, model, version, track)."""
    return _bundle.reconstruct(_mel_db, label)


@st.cache_data(show_spinner="Walking the latent space…", max_entries=32)
def morphed(key: tuple, _bundle, _mel_a: np.ndarray, _mel_b: np.ndarray, steps: int, label: Optional[int]) -> np.ndarray:
    from musiclust.service import morph

    return morph(_bundle, _mel_a, _mel_b, steps, label)


@st.cache_data(show_spinner=False, max_entries=32)
def upload_cluster(key: tuple, _bundle, _mel_db: np.ndarray, lyrics: Optional[str]) -> int:
    """The cluster of the last upload under another model (for that model's default decoder label)."""
    return _bundle.place(_mel_db, lyrics).cluster
