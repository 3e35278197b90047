"""The shared sidebar (data set, model, retrain form, the retrain's progress) and the pages' guards that
say what to run when a data set has no trained model yet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import streamlit as st

from musiclust.errors import JobBusyError, MusiclustError
from musiclust.service import ModelInfo, model_catalogue, training_defaults
from musiclust.serving.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED
from musiclust_app.state import Context, context, dataset_options, initial_dataset, jobs, preferred_model
from musiclust_app.text import TRAIN_COMMAND, arg_value, dataset_label, format_seconds, md, outcome_reason, progress_text

OTHER = "__other__"


def draw() -> None:
    """The sidebar of every page, and the toast after a retrain switched new models in."""
    notice_finished_jobs()
    with st.sidebar:
        st.session_state["_dataset"] = choose_dataset()
        choose_model(context())
        retrain_form(context())
        job_panel()
    if st.session_state.pop("_job_switched", None):
        st.toast("The retrained models are now in use.", icon=":material/check_circle:")


# --- data set and model ------------------------------------------------------------------------
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
    blurb = next((m.blurb for m in model_catalogue() if m.name == name), "")
    st.caption(f"{blurb} · version `{ctx.version(name)}`")


# --- retrain -----------------------------------------------------------------------------------
def train_args(ctx: Context, models: list[str], epochs: Optional[int] = None, latent: Optional[int] = None,
               beta: Optional[float] = None, k: Optional[int] = None, seed: Optional[int] = None) -> list[str]:
    """The ``python -m musiclust train`` arguments of a retrain of ``models`` on the chosen data set."""
    args = ["--data", ctx.dataset, "--models", ",".join(models), "--checkpoints", str(ctx.root)]
    for flag, value in (("--epochs", epochs), ("--latent-dim", latent), ("--beta", beta), ("--k", k), ("--seed", seed)):
        if value is not None:
            args += [flag, str(value)]
    return args


def start_retrain(args: list[str]) -> Optional[str]:
    """Start a retrain in the background; the reason it was refused, or ``None`` when it started."""
    try:
        jobs().start(args)
    except JobBusyError as exc:
        return str(exc)
    except MusiclustError as exc:
        return f"The retrain could not start: {exc}"
    return None


def retrain_form(ctx: Context) -> None:
    names = [m.name for m in model_catalogue()]
    defaults = training_defaults()
    with st.expander("Retrain models", expanded=False, icon=":material/model_training:"):
        with st.form("retrain_form", border=False):
            models = st.multiselect("Models", names, default=[ctx.model] if ctx.model else names, key="retrain_models")
            a, b = st.columns(2)
            epochs = a.number_input("Epochs", 1, 1000, defaults["epochs"], key="retrain_epochs",
                                    help="At most this many; training stops early when the validation loss stops improving")
            latent = b.number_input("Latent size", 2, 512, defaults["latent_dim"], key="retrain_latent")
            beta = a.number_input("β (beta_cvae)", 0.0, 100.0, defaults["beta"], step=0.5, key="retrain_beta")
            k = b.number_input("Clusters k", 0, 200, 0, help="0 = one cluster per group", key="retrain_k")
            seed = a.number_input("Seed", 0, 2**31 - 1, defaults["seed"], key="retrain_seed")
            submitted = st.form_submit_button("Start retrain", type="primary", width="stretch", key="retrain_start")
        st.caption(f"Runs `{TRAIN_COMMAND}` in the background on {md(dataset_label(ctx.dataset))}; "
                   "the current models stay in use until it succeeds.")
        if submitted:
            if not models:
                st.warning("Pick at least one model to retrain.")
                return
            refused = start_retrain(train_args(ctx, models, int(epochs), int(latent), float(beta), int(k) or None, int(seed)))
            if refused:
                st.warning(refused, icon=":material/block:")
            else:
                st.rerun()


def notice_finished_jobs() -> None:
    """Clear the cached services and tables once per session when a retrain is seen to have succeeded.

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
        st.warning(f"Last retrain cancelled: {md(outcome_reason(status.message, 'cancelled'))}", icon=":material/cancel:")
    elif status.state == FAILED:
        st.error(f"Last retrain failed: {md(outcome_reason(status.message, 'failed'))}", icon=":material/error:")


@st.fragment(run_every=1)
def _job_progress() -> None:
    status = jobs().status()
    if status.state != RUNNING:
        st.rerun()  # the whole app: caches are refreshed and the outcome shown
    st.progress(status.fraction, text=f"Retraining: {progress_text(status)}")
    data = dataset_label(arg_value(status.args, "--data") or "?")
    st.caption(f"Data set: {md(data)} · started {format_seconds(time.time() - status.started_at)} ago")
    if st.button("Cancel retrain", key="cancel_retrain"):
        jobs().cancel()
        st.toast("Cancelling: the run stops at its next batch; the current models stay in use.")


# --- the pages' guards -------------------------------------------------------------------------
def require_trained(ctx: Context) -> bool:
    """True when the data set has a trained model; otherwise say what to run and offer the retrain."""
    if ctx.model is not None:
        return True
    data_flag = f" `--data {ctx.dataset.replace('`', '')}`" if ctx.dataset != "default" else ""
    st.info(
        f"No trained model for **{md(dataset_label(ctx.dataset))}** yet. Train the models from a terminal with "
        f"`{TRAIN_COMMAND}`{data_flag}, or start a retrain here (it runs in the background; progress shows in the sidebar)."
    )
    if st.button("Train the models now", key="empty_state_train", type="primary"):
        refused = start_retrain(train_args(ctx, ["all"]))
        if refused:
            st.warning(refused)
        else:
            st.rerun()
    return False


def load_model(ctx: Context, name: Optional[str] = None) -> Optional[ModelInfo]:
    """Model ``name`` (default: the one in use), or ``None`` after saying why it could not be loaded."""
    name = name or ctx.model
    try:
        return ctx.info(name)
    except MusiclustError as exc:
        st.error(f"The model {name} could not be loaded: {md(exc)}")
        return None


def require_model(ctx: Context) -> Optional[ModelInfo]:
    """The model in use, or ``None`` after explaining why there is none (with a retrain button)."""
    if not require_trained(ctx):
        return None
    model = load_model(ctx)
    if model is not None and model.fallback_reason:
        st.warning(f"The newest version of {ctx.model} could not be loaded, so the previous version is in use: "
                   f"{md(model.fallback_reason)}")
    return model
