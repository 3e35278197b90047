"""One small exceptions module, so every bad input gets a clear, typed error.

Callers (the CLI, the app) catch :class:`MusiclustError` and show its message to a person;
anything else escaping is a bug.
"""


class MusiclustError(Exception):
    """Base class of every error musiclust raises on purpose."""


class ParameterError(MusiclustError, ValueError):
    """An argument or setting is out of range or of the wrong kind."""


class AudioError(MusiclustError):
    """An audio file cannot be used: undecodable, empty, too short or long, or holding NaN/Inf."""


class DataError(MusiclustError):
    """A collection, manifest or data folder is missing or malformed."""


class CheckpointError(MusiclustError):
    """A checkpoint is missing, truncated, corrupt or built for another architecture."""


class TrainingError(MusiclustError):
    """A training run diverged (NaN/Inf or exploding loss); the previous model stays in use."""


class TrainingCancelled(MusiclustError):
    """A training run was cancelled by the user; the previous model stays in use."""


class JobBusyError(MusiclustError):
    """A background job (retrain) is already running; only one runs at a time."""
