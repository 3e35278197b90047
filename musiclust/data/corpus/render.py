"""Rendering one manifest row: notes -> MIDI -> fluidsynth -> a 30 s WAV, with caps on time and size.

:func:`render_clip` takes the clip's notes (:mod:`.scores`), synthesises them with pretty_midi +
pyfluidsynth at 22,050 Hz mono, cuts or pads to the exact length, fades (5 ms in, 50 ms out),
peak-normalises to ``PEAK_DBFS`` (-1 dBFS, so loudness is not a group cue; every note has the same
``VELOCITY``) and writes 16-bit PCM WAV through a temporary file and ``os.replace``.

**Caps.** Each clip runs in its own forked process that is killed after ``timeout_s`` and whose file
size is capped by ``RLIMIT_FSIZE`` (the ``fluidsynth`` command line once wrote 23 GB for one
quartet; the in-memory path is also capped by the number of samples). A file appears only when it
is complete and valid (:func:`_clip_problem`). Rendering is bit-identical from run to run.

The soundfont and music21/pretty_midi are loaded once per worker process and inherited by the
forked clip processes (``share_synth``; :mod:`.build` uses it): that cut the CPU time of a full
build from ~560 s to ~210 s (natural).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from musiclust.data.corpus.manifest import _typed_row
from musiclust.data.corpus.scores import Event, _programs, _score_error_types, _window, piece_events
from musiclust.errors import AudioError, DataError, MusiclustError, ParameterError

SAMPLE_RATE = 22_050
PEAK_DBFS = -1.0
VELOCITY = 80
FADE_IN_SECONDS = 0.005
FADE_OUT_SECONDS = 0.05
SILENCE_PEAK = 1e-6
# 30 s of 16-bit mono at 22,050 Hz is 1,323,044 bytes; twice that leaves room and still stops a runaway.
DEFAULT_MAX_BYTES = 3_000_000

VARIANTS = ("natural", "piano")
SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
)


def find_soundfont() -> Path:
    """The General MIDI soundfont to render with: FluidR3_GM, else TimGM6mb."""
    for candidate in SOUNDFONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(p) for p in SOUNDFONT_CANDIDATES)
    raise DataError(
        f"no General MIDI soundfont found (looked for {looked}); install the Debian package "
        "fluid-soundfont-gm: apt-get install -y --no-install-recommends fluid-soundfont-gm"
    )


def _check_synth_available() -> None:
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth loads libfluidsynth on import)
    except (ImportError, OSError) as exc:
        raise DataError(
            f"pyfluidsynth cannot load libfluidsynth ({exc}); install the Debian package libfluidsynth3 "
            "and the PyPI package pyfluidsynth"
        ) from None


def clip_events(row: dict, cache_dir: Optional[Path] = None) -> list[list[Event]]:
    """The notes of the clip a manifest row names, per part, in seconds from the clip's start."""
    row = _typed_row(row)
    parts, length = piece_events(row["corpus_path"], row["number"], cache_dir)
    return _window(parts, length, row["offset_s"], row["duration_s"])


# One loaded soundfont per pool worker: the clip processes forked from the worker inherit it instead of
# reading the 145 MB file again (that read cost ~0.15 s CPU and ~0.4 s wall per clip on a busy machine).
# The worker itself never plays a note, so every clip starts from a silent, freshly loaded synthesizer.
_WORKER_SYNTHS: dict[str, tuple[object, int]] = {}


def _worker_synth(sf2_path: Path) -> tuple[object, int]:
    """(fluidsynth.Synth, soundfont id) loaded once in this process."""
    key = str(sf2_path)
    if key not in _WORKER_SYNTHS:
        import fluidsynth

        synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
        sfid = synth.sfload(key)
        if sfid < 0:
            raise DataError(f"fluidsynth cannot load the soundfont {sf2_path}")
        _WORKER_SYNTHS[key] = (synth, sfid)
    return _WORKER_SYNTHS[key]


def _synthesize(parts: list[list[Event]], programs: list[int], duration_s: float, sf2_path: Path, synth: Optional[tuple[object, int]] = None) -> np.ndarray:
    """Mono float audio of exactly ``duration_s`` seconds, faded and peak-normalised."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for events, program in zip(parts, programs):
        instrument = pretty_midi.Instrument(program=program)
        instrument.notes = [pretty_midi.Note(velocity=VELOCITY, pitch=p, start=s, end=e) for p, s, e in events]
        midi.instruments.append(instrument)
    if midi.get_end_time() > duration_s + 1e-6:
        raise AudioError(f"notes run to {midi.get_end_time():.1f} s, past the clip's {duration_s:.1f} s")
    n_samples = int(round(duration_s * SAMPLE_RATE))
    if synth is None:
        audio = midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=str(sf2_path), normalize=False)
    else:
        audio = midi.fluidsynth(fs=SAMPLE_RATE, synthesizer=synth[0], sfid=synth[1], normalize=False)
    audio = np.asarray(audio, dtype=np.float64)[:n_samples]
    audio = np.pad(audio, (0, n_samples - audio.size)) if audio.size < n_samples else audio
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if not np.isfinite(peak) or peak <= SILENCE_PEAK:
        raise AudioError("the rendered clip is silent")
    fade_in, fade_out = int(FADE_IN_SECONDS * SAMPLE_RATE), int(FADE_OUT_SECONDS * SAMPLE_RATE)
    audio[:fade_in] *= np.linspace(0.0, 1.0, fade_in, endpoint=False)
    audio[-fade_out:] *= np.linspace(1.0, 0.0, fade_out)
    audio *= 10 ** (PEAK_DBFS / 20) / float(np.max(np.abs(audio)))
    return audio.astype(np.float32)


@dataclass(frozen=True)
class _ClipJob:
    """Everything the clip process needs."""

    row: dict
    variant: str
    sf2_path: Path
    tmp_path: Path
    max_bytes: int
    cache_dir: Optional[Path]
    synth: Optional[tuple[object, int]] = None  # a soundfont already loaded in the parent, inherited by fork


def _render_to_file(job: _ClipJob) -> None:
    import soundfile

    parts = clip_events(job.row, job.cache_dir)
    programs = _programs(job.row, job.variant, len(parts))
    audio = _synthesize(parts, programs, job.row["duration_s"], job.sf2_path, job.synth)
    soundfile.write(str(job.tmp_path), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _child(conn, job: _ClipJob) -> None:
    """Runs in the clip's own process: render, report ("ok", "") or ("error", reason) through ``conn``."""
    # Python ignores SIGXFSZ, so writing past the cap fails with OSError (EFBIG) instead of filling the disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (job.max_bytes, job.max_bytes))
    try:
        _render_to_file(job)
        conn.send(("ok", ""))
    # libsndfile and the fluidsynth wrapper report their failures as RuntimeError
    except (MusiclustError, RuntimeError, *_score_error_types()) as exc:
        conn.send(("error", _failure_reason(exc, job.tmp_path, job.max_bytes)))
    finally:
        conn.close()


def _failure_reason(exc: BaseException, tmp_path: Path, max_bytes: int) -> str:
    """The child's error message; a write stopped by the size cap says so (libsndfile only says "System error")."""
    try:
        capped = tmp_path.stat().st_size >= max_bytes
    except OSError:
        capped = False
    if capped:
        return f"output reached the {max_bytes}-byte size cap and was stopped ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


def _stop(process: multiprocessing.Process) -> None:
    process.join(timeout=1.0)
    if process.is_alive():
        process.terminate()
        process.join(timeout=2.0)
    if process.is_alive():
        process.kill()
        process.join(timeout=2.0)


def _preload_modules() -> None:
    """Import what a clip process needs *before* forking it, so each clip does not pay ~1.2 s of imports.

    The first full build spent most of its per-clip CPU time importing music21 and pretty_midi in
    every forked child; imported once in the parent, they are inherited for free.
    """
    import music21.converter  # noqa: F401
    import music21.text  # noqa: F401
    import pretty_midi  # noqa: F401
    import soundfile  # noqa: F401


def _run_isolated(job: _ClipJob, timeout_s: float) -> None:
    """Render in a forked process that is killed after ``timeout_s``; raises AudioError on failure."""
    _preload_modules()
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, job))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            raise AudioError(f"timed out after {timeout_s:g} s (render process killed)")
        try:
            status, reason = receiver.recv()
        except EOFError:
            process.join(timeout=2.0)
            raise AudioError(f"render process died (exit code {process.exitcode})") from None
    finally:
        receiver.close()
        _stop(process)
    if status != "ok":
        raise AudioError(reason)


@dataclass(frozen=True)
class ClipOutcome:
    """One clip's result: ``reason`` is empty when it was built or already there."""

    id: str
    seconds: float
    reason: str = ""


def render_clip(
    row: dict,
    variant: str,
    sf2_path: Optional[Path],
    out_path: Path,
    timeout_s: float = 60.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    cache_dir: Optional[Path] = None,
    share_synth: bool = False,
) -> ClipOutcome:
    """Render one manifest row to ``out_path`` (22,050 Hz mono 16-bit WAV, exactly ``duration_s``).

    Work happens in a forked process that is killed after ``timeout_s`` seconds and may write at most
    ``max_bytes`` bytes; the file appears atomically (temporary file + ``os.replace``) only when it is
    complete and valid. ``sf2_path=None`` finds the soundfont. ``cache_dir`` keeps the piece's notes
    so its other clips and the other variant render without parsing. ``share_synth`` loads the
    soundfont once in this process (it then stays in memory) for the clip processes to inherit; the
    build's workers use it. Raises :class:`AudioError` (timeout, size cap, silent or failed render),
    :class:`DataError` (bad row, missing soundfont) or :class:`ParameterError`.
    """
    if variant not in VARIANTS:
        raise ParameterError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if timeout_s <= 0 or max_bytes <= 44:
        raise ParameterError("timeout_s must be positive and max_bytes larger than a WAV header")
    row = _typed_row(row)
    sf2 = Path(sf2_path) if sf2_path is not None else find_soundfont()
    if not sf2.is_file():
        raise DataError(f"soundfont not found: {sf2} (Debian package fluid-soundfont-gm)")
    _check_synth_available()
    expected_bytes = 44 + 2 * int(round(row["duration_s"] * SAMPLE_RATE))
    if expected_bytes > max_bytes:
        raise AudioError(f"{row['id']}: a {row['duration_s']:g} s clip needs {expected_bytes} bytes, over the {max_bytes}-byte cap")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.stem}.tmp-{os.getpid()}.wav")
    started = time.perf_counter()
    synth = _worker_synth(sf2) if share_synth else None
    job = _ClipJob(row, variant, sf2, tmp_path, max_bytes, Path(cache_dir) if cache_dir is not None else None, synth)
    try:
        _run_isolated(job, timeout_s)
        problem = _clip_problem(tmp_path, row["duration_s"], max_bytes)
        if problem:
            raise AudioError(f"{row['id']}: rendered file is invalid: {problem}")
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return ClipOutcome(row["id"], round(time.perf_counter() - started, 3))


def _clip_problem(path: Path, duration_s: float, max_bytes: int) -> str:
    """Why a rendered file is not a valid clip, or ``""`` when it is."""
    import soundfile

    try:
        size = path.stat().st_size
        info = soundfile.info(str(path))
    except (OSError, RuntimeError) as exc:
        return f"unreadable ({exc})"
    if size > max_bytes:
        return f"{size} bytes, over the {max_bytes}-byte cap"
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        return f"{info.samplerate} Hz, {info.channels} channels"
    if info.frames != int(round(duration_s * SAMPLE_RATE)):
        return f"{info.frames} samples, expected {int(round(duration_s * SAMPLE_RATE))}"
    return ""
