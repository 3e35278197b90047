"""The shared sidebar (data set, where its groups come from, k, model, retrain form, the retrain's progress
and outcome) and the pages' guards that say what to run when a data set has no trained model yet.

The data-set list is every library with trained models plus the one chosen last (remembered on disk, so
a library trained yesterday is one click away); a typed folder or CSV is read only under the library
roots (:mod:`musiclust.data.roots`), checked before anything else so a refusal says nothing about what
exists. A retrain's outcome is shown with the data set it was run on, and can be dismissed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import streamlit as st

from musiclust.data.collection import GROUP_SOURCES
from musiclust.data.known import LibraryChoice, remember_library
from musiclust.data.roots import check_spec, is_default_spec
from musiclust.errors import JobBusyError, MusiclustError
from musiclust.service import ModelInfo, dataset_slug, model_catalogue, training_defaults
from musiclust.serving.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStatus
from musiclust_app.state import (
    Context, context, dataset_options, initial_dataset, jobs, models_count, preferred_model, remembered,
)
from musiclust_app.components import first_run_plan
from musiclust_app.text import TRAIN_COMMAND, arg_value, dataset_label, format_seconds, md, outcome_reason, progress_text

OTHER = "__other__"
GROUP_LABELS = {"auto": "Automatic", "folder": "Sub-folders", "tag": "Genre tags", "column": "A CSV column",
                "none": "None (unlabelled)"}


def draw() -> None:
    """The sidebar of every page, and the toast after a retrain switched new models in."""
    notice_finished_jobs()
    with st.sidebar:
        switch_dataset(choose_dataset())
        ctx = context()
        choose_model(ctx)
        rescan_button(ctx)
        retrain_form(ctx)
        job_panel(ctx)
    if st.session_state.pop("_job_switched", None):
        st.toast("The retrained models are now in use.", icon=":material/check_circle:")


# --- data set and model ------------------------------------------------------------------------
def option_label(spec: str) -> str:
    if spec == OTHER:
        return "A music folder or CSV manifest…"
    count = models_count(spec)
    return f"{dataset_label(spec)} · {count} model{'s' if count != 1 else ''}" if count else f"{dataset_label(spec)} · not trained"


def choose_dataset() -> str:
    """The data set picked from the list, or a typed folder / CSV that passes the library-root check."""
    options = dataset_options()
    current = st.session_state.get("_dataset")
    if current and current not in options:
        options.insert(0, current)  # a typed library stays listed for the session, trained or not
    options.append(OTHER)
    if st.session_state.get("dataset_choice") not in options:
        st.session_state.pop("dataset_choice", None)
    choice = st.selectbox(
        "Data set",
        options,
        key="dataset_choice",
        format_func=option_label,
        help="Every library with trained models, and the one chosen last. A folder is scanned recursively; "
        "a CSV needs a 'path' column (optional: title, artist, album, genre, lyrics).",
    )
    if choice != OTHER:
        return choice
    typed = st.text_input("Folder or CSV path", key="dataset_path", placeholder="~/Music/my library or ~/Music/list.csv").strip()
    fallback = current or initial_dataset()
    if not typed:
        st.caption("Type the path of a folder of audio files or of a CSV manifest, under a library root.")
        return fallback
    try:
        check_spec(typed)  # before anything is looked at: a refusal tells nothing about what exists
    except MusiclustError as exc:
        st.error(md(exc), icon=":material/block:")
        return fallback
    path = Path(typed).expanduser()
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".csv")):
        st.error(f"No folder or .csv file at {md(typed)}")
        return fallback
    return str(path.resolve())


def switch_dataset(dataset: str) -> None:
    """Make ``dataset`` the session's data set: a new one starts the retrain form afresh (its model list
    must not carry the previous data set's model) and is remembered as the last library chosen."""
    previous = st.session_state.get("_dataset")
    st.session_state["_dataset"] = dataset
    if previous is not None and previous != dataset:
        for key in ("retrain_models", "library_groups", "library_column", "retrain_k"):
            st.session_state.pop(key, None)
        remember(dataset)


def remember(dataset: str, groups: str = "auto", column: Optional[str] = None) -> None:
    try:
        remember_library(LibraryChoice(dataset, groups, column or None))
    except (OSError, MusiclustError):
        pass  # remembering is a convenience: the choice itself stands


def choose_model(ctx: Context) -> None:
    if not ctx.models:
        if first_run_plan(ctx) is not None:
            st.info("The default set's models are being built (progress on the page); each is offered here as it lands.")
        else:
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
def group_options(dataset: str) -> list[str]:
    """The group sources a data set can take: the default set has its manifest's groups or none; a
    folder has no columns; a CSV can take any."""
    if is_default_spec(dataset):
        return ["auto", "none"]
    if dataset.lower().endswith(".csv"):
        return list(GROUP_SOURCES)
    return [g for g in GROUP_SOURCES if g != "column"]


def library_settings(ctx: Context) -> None:
    """Where groups come from and k: they shape every retrain of this data set (form, rescan, empty state)."""
    options = group_options(ctx.dataset)
    last = remembered()
    if "library_groups" not in st.session_state and last and last.data == ctx.dataset and last.groups in options:
        st.session_state["library_groups"] = last.groups
        st.session_state["library_column"] = last.column or ""
    if st.session_state.get("library_groups") not in options:
        st.session_state.pop("library_groups", None)
    groups = st.selectbox("Groups from", options, key="library_groups", format_func=GROUP_LABELS.get,
                          help="Automatic: the immediate sub-folders when 2 or more hold audio directly, else none "
                          "(a CSV: its 'genre' column). Groups give k (one cluster per group) and the label scores; "
                          "without groups, k is found from the data and only label-free scores are given.")
    column = st.text_input("Column", key="library_column", placeholder="genre") if groups == "column" else ""
    st.number_input("Clusters k", 0, 200, 0, key="retrain_k",
                    help="0 = one cluster per group, or found from the data (a sweep over k) when there are none")
    chosen = (groups, column.strip() or None)
    if st.session_state.get("_remembered_groups", chosen) != chosen:
        remember(ctx.dataset, *chosen)
    st.session_state["_remembered_groups"] = chosen


def train_args(ctx: Context, models: list[str], epochs: Optional[int] = None, latent: Optional[int] = None,
               beta: Optional[float] = None, seed: Optional[int] = None) -> list[str]:
    """The ``python -m musiclust train`` arguments of a retrain of ``models`` on the chosen data set,
    with the sidebar's group source and k."""
    args = ["--data", ctx.dataset, "--models", ",".join(models), "--checkpoints", str(ctx.root)]
    groups = st.session_state.get("library_groups") or "auto"
    column = (st.session_state.get("library_column") or "").strip()
    args += ["--groups", groups] + (["--group-column", column] if groups == "column" and column else [])
    k = int(st.session_state.get("retrain_k") or 0) or None
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


def form_values() -> dict:
    """The retrain form's last submitted numbers (its defaults before any submit)."""
    defaults = training_defaults()
    state = st.session_state
    return {"epochs": int(state.get("retrain_epochs", defaults["epochs"])),
            "latent": int(state.get("retrain_latent", defaults["latent_dim"])),
            "beta": float(state.get("retrain_beta", defaults["beta"])), "seed": int(state.get("retrain_seed", defaults["seed"]))}


def rescan_button(ctx: Context) -> None:
    """A library with models: rescan its folder (only new or changed files are featurized) and retrain
    the models it has, with the form's settings."""
    if is_default_spec(ctx.dataset) or not ctx.models:
        return
    if st.button("Rescan and retrain", key="rescan_retrain", icon=":material/refresh:", width="stretch",
                 help="Scan the folder again (new and changed files are featurized, removed ones dropped) and "
                 f"retrain its {len(ctx.models)} model(s) in the background"):
        refused = start_retrain(train_args(ctx, ctx.models, **form_values()))
        if refused:
            st.warning(refused, icon=":material/block:")
        else:
            st.rerun()


def models_help(opt_in: list[str]) -> str:
    """The retrain form's model help: what the opt-in models (not picked unless chosen) cost."""
    help_text = "The models to train; a model that cannot train on this data set is skipped with the reason."
    if opt_in:
        help_text += (f" Opt-in ({', '.join(opt_in)}): not picked by default, as it reads the pretrained MusiCNN tagger's "
                      "view of every track. Its first training extracts it per track, a few CPU-seconds per 30 s clip; "
                      "the vectors are cached, so later retrains reuse them (an upload's are extracted as it is placed).")
    return help_text


def retrain_form(ctx: Context) -> None:
    catalogue = model_catalogue()
    names = [m.name for m in catalogue]
    opt_in = [m.name for m in catalogue if m.opt_in]
    beta_for = ", ".join(m.name for m in catalogue if m.uses_beta) or "no model"
    defaults = training_defaults()
    with st.expander("Retrain models", expanded=False, icon=":material/model_training:"):
        library_settings(ctx)
        with st.form("retrain_form", border=False):
            models = st.multiselect("Models", names, default=[ctx.model] if ctx.model else [n for n in names if n not in opt_in],
                                    key="retrain_models", help=models_help(opt_in))
            a, b = st.columns(2)
            epochs = a.number_input("Epochs", 1, 1000, defaults["epochs"], key="retrain_epochs",
                                    help="At most this many; training stops early when the validation loss stops improving")
            latent = b.number_input("Latent size", 2, 512, defaults["latent_dim"], key="retrain_latent")
            beta = a.number_input(f"β ({beta_for})", 0.0, 100.0, defaults["beta"], step=0.5, key="retrain_beta")
            seed = b.number_input("Seed", 0, 2**31 - 1, defaults["seed"], key="retrain_seed")
            submitted = st.form_submit_button("Start retrain", type="primary", width="stretch", key="retrain_start")
        st.caption(f"Runs `{TRAIN_COMMAND}` in the background on {md(dataset_label(ctx.dataset))}; "
                   "the current models stay in use until it succeeds.")
        if submitted:
            if not models:
                st.warning("Pick at least one model to retrain.")
                return
            refused = start_retrain(train_args(ctx, models, int(epochs), int(latent), float(beta), int(seed)))
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


def outcome_line(status: JobStatus) -> str:
    """``"4 of 5 trained; beta_cvae skipped: …"`` from a finished job's ``trained`` / ``not_trained``
    (the job's own message when it recorded neither: a run that stopped before training)."""
    if not status.trained and not status.not_trained:
        return status.message
    total = len(status.trained) + len(status.not_trained)
    return "; ".join([f"{len(status.trained)} of {total} trained", *(f"{name} {why}" for name, why in status.not_trained.items())])


def job_dataset(status: JobStatus) -> Optional[str]:
    """The data set a job ran on: its ``--data``, or the default set's variant for a first run."""
    data = arg_value(status.args, "--data")
    return data if data else f"default:{arg_value(status.args, '--variant') or 'natural'}" if status.args else None


def same_dataset(a: Optional[str], b: str) -> bool:
    try:
        return a is not None and dataset_slug(a) == dataset_slug(b)
    except (OSError, RuntimeError, ValueError):
        return False


def job_panel(ctx: Context) -> None:
    """The retrain's state: a live progress bar while it runs (whichever data set: it blocks the next
    retrain); once it ended, its outcome, only beside the data set it ran on, until dismissed."""
    status = jobs().status()
    if status.state == RUNNING:
        _job_progress()
        return
    if status.state not in (SUCCEEDED, CANCELLED, FAILED) or not same_dataset(job_dataset(status), ctx.dataset):
        return
    if status.job_id in st.session_state.get("_dismissed_jobs", ()):
        return
    if status.state == SUCCEEDED:
        when = time.strftime("%H:%M", time.localtime(status.finished_at)) if status.finished_at else ""
        st.success(f"Last retrain finished {when}: {md(outcome_line(status))}. The new models are in use.")
    elif status.state == CANCELLED:
        st.warning(f"Last retrain cancelled: {md(outcome_reason(status.message, 'cancelled'))}", icon=":material/cancel:")
    else:
        reason = outcome_line(status) if status.not_trained else outcome_reason(status.message, "failed")
        st.error(f"Last retrain failed: {md(reason)}", icon=":material/error:")
    if st.button("Dismiss", key="dismiss_outcome", icon=":material/close:"):
        st.session_state.setdefault("_dismissed_jobs", set()).add(status.job_id)
        st.rerun()


@st.fragment(run_every=1)
def _job_progress() -> None:
    status = jobs().status()
    if status.state != RUNNING:
        st.rerun()  # the whole app: caches are refreshed and the outcome shown
    st.progress(status.fraction, text=f"Retraining: {progress_text(status)}")
    data = dataset_label(job_dataset(status) or "?")
    st.caption(f"Data set: {md(data)} · started {format_seconds(time.time() - status.started_at)} ago")
    if st.button("Cancel retrain", key="cancel_retrain"):
        jobs().cancel()
        st.toast("Cancelling: the run stops at its next batch; the current models stay in use.")


# --- the pages' guards -------------------------------------------------------------------------
def require_trained(ctx: Context) -> bool:
    """True when the data set has a trained model; otherwise say what to run and offer the retrain."""
    if ctx.model is not None:
        return True
    status = jobs().status()
    if status.state == RUNNING and same_dataset(job_dataset(status), ctx.dataset):
        st.info(f"The models of **{md(dataset_label(ctx.dataset))}** are being trained: the progress shows in the "
                "sidebar, and this page fills in when the first run ends.", icon=":material/hourglass_top:")
        return False
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
