"""Text the app writes: Markdown-safe escaping, track lines, playlists, labels and durations.

Pure functions (no Streamlit), so they are tested without a running app.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from musiclust.service import DecoderLabel
from musiclust.serving.jobs import JobStatus

if TYPE_CHECKING:
    import pandas as pd

TRAIN_COMMAND = "python -m musiclust train"
_MD_SPECIAL = set("\\`*_{}[]<>#|~$")


def md(text) -> str:
    """Text from files, people or error messages, safe inline in Markdown: emphasis, code, links, HTML,
    colour directives and maths cannot form (their characters are backslash-escaped)."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in " ".join(str(text).split()))


def track_line(title, artist, group) -> str:
    """``**title** · artist · _group_``, each part escaped; an unknown group is left out."""
    parts = [f"**{md(title)}**"]
    if artist:
        parts.append(md(artist))
    if group and group != "unknown":
        parts.append(f"_{md(group)}_")
    return " · ".join(parts)


def dataset_label(spec: str) -> str:
    if spec in ("default", "default:natural"):
        return "Default set (natural instruments)"
    if spec == "default:piano":
        return "Default set, all piano (one timbre)"
    return spec


def describe_label(label: DecoderLabel, model: str) -> str:
    """Which label a conditioned decoder was given, and why (Markdown-safe)."""
    if label.source == "group":
        return f"its group, “{md(label.name)}”"
    if label.source == "cluster":
        return f"“{md(label.name)}”, the majority group of its cluster {label.cluster} (its own group is unknown)"
    return f"“{md(label.name)}”, the majority group of cluster {label.cluster}, where {md(model)} places your upload"


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- playlists ---------------------------------------------------------------------------------
def m3u_playlist(rows: pd.DataFrame) -> str:
    """An extended M3U of ``rows`` (title, artist, path), with absolute paths."""
    lines = ["#EXTM3U"]
    for title, artist, path in zip(rows["title"], rows["artist"], rows["path"]):
        name = f"{artist} - {title}" if artist else str(title)
        lines.append(f"#EXTINF:-1,{' '.join(name.splitlines())}")
        lines.append(str(Path(path).resolve()))
    return "\n".join(lines) + "\n"


def csv_playlist(rows: pd.DataFrame) -> str:
    """``rows`` as CSV: id, title, artist, group, cluster and absolute path."""
    out = io.StringIO()
    frame = rows[["id", "title", "artist", "group", "cluster", "path"]].copy()
    frame["path"] = [str(Path(p).resolve()) for p in frame["path"]]
    frame.to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
    return out.getvalue()


# --- retrain progress --------------------------------------------------------------------------
def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "estimating…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def arg_value(args: list, flag: str) -> Optional[str]:
    """The value after ``flag`` in a command line, or ``None``."""
    try:
        return str(args[args.index(flag) + 1])
    except (ValueError, IndexError):
        return None


def progress_text(status: JobStatus) -> str:
    """``model (i/n) · epoch e/E · loss · time left`` of a running retrain."""
    if not status.model:
        return status.message or "starting…"
    parts = [f"{status.model} ({status.model_index + 1}/{status.n_models})"]
    n_epochs = status.n_epochs or arg_value(status.args, "--epochs")
    if n_epochs:
        parts.append(f"epoch {status.epoch}/{n_epochs}")
    if status.loss is not None:
        parts.append(f"loss {status.loss:.4g}")
    parts.append(f"{format_seconds(status.seconds_left)} left")
    return " · ".join(parts)


def first_run_text(status: JobStatus) -> str:
    """The first run's line: clips rendered, or the model being trained, each with the phase's time left."""
    left = status.seconds_left
    about = f" · about {format_seconds(left)} left" if left is not None else " · estimating the time left…"
    if status.phase == "render":
        return f"Rendering the default set: {status.clips_done} of {status.clips_total} clips{about}"
    if not status.model:
        return status.message.capitalize() if status.message else "Preparing the default set…"
    text = f"Training model {status.model_index + 1} of {status.n_models} ({status.model})"
    if status.n_epochs:
        text += f" · epoch {status.epoch} of {status.n_epochs}"
    return text + about


def outcome_reason(message: str, state: str) -> str:
    """A finished job's message without its leading ``state:``."""
    message = (message or "no reason given").strip()
    return message[len(state) + 1 :].strip() if message.lower().startswith(state + ":") else message
