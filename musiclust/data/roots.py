"""Library roots: the folders under which music folders and CSV manifests may be read.

The app's folder field is typed by whoever visits it; without a limit any server path (``/``, ``/etc``,
a home folder) would be scanned, its file names shown and its audio played. So a collection is read
only when its folder or CSV lies under a configured root, *after* ``~``, ``..`` and symbolic links are
resolved, and so does every file the scan finds or a CSV lists (a link inside the library pointing to
``/etc/passwd`` is not read). The check runs before anything is looked at, so a refused path tells
nothing about whether it exists.

Roots come from ``MUSICLUST_LIBRARY_ROOTS`` (folders separated by ``os.pathsep``, ``:`` on Linux and
macOS) or default to the repository's ``data/`` and the user's ``~/Music``. The embedded default set
(``default``, ``default:piano``) is always allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from musiclust.errors import DataError
from musiclust.paths import DATA_DIR

ROOTS_ENV = "MUSICLUST_LIBRARY_ROOTS"


def default_roots() -> tuple[Path, ...]:
    """The roots when ``MUSICLUST_LIBRARY_ROOTS`` is unset: the repository's ``data/`` and ``~/Music``."""
    return DATA_DIR, Path.home() / "Music"


def _resolve(path: Path) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic-link loop
        raise DataError(f"{path} cannot be resolved ({exc})") from None


def library_roots() -> tuple[Path, ...]:
    """The roots in force, resolved: ``MUSICLUST_LIBRARY_ROOTS`` (read at call time) or :func:`default_roots`.

    Raises :class:`DataError` for a relative entry: a root that moved with the server's working
    directory would open or close folders by accident.
    """
    raw = os.environ.get(ROOTS_ENV, "")
    entries = [entry.strip() for entry in raw.split(os.pathsep) if entry.strip()]
    if not entries:
        return tuple(_resolve(root) for root in default_roots())
    roots = []
    for entry in entries:
        path = Path(entry).expanduser()
        if not path.is_absolute():
            raise DataError(f"{ROOTS_ENV} entries must be absolute folders, got {entry!r}")
        roots.append(_resolve(path))
    return tuple(roots)


def is_default_spec(spec: str) -> bool:
    """``default`` or ``default:<variant>``: the embedded set, readable whatever the roots."""
    return spec == "default" or spec.startswith("default:")


def is_within_roots(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path``, with ``~``, ``..`` and every symbolic link resolved, lies under one of ``roots``
    (which must be resolved already, as :func:`library_roots` gives them)."""
    try:
        resolved = _resolve(path)
    except DataError:
        return False
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def _refusal(shown: str, roots: Sequence[Path]) -> DataError:
    listed = ", ".join(str(root) for root in roots) or "(none configured)"
    return DataError(
        f"{shown} is outside the library roots (checked after following links and '..'); music is read only "
        f"under: {listed}. To add a folder, set {ROOTS_ENV} (folders separated by '{os.pathsep}') before starting the app"
    )


def check_path(path: Path, roots: Optional[Sequence[Path]] = None) -> Path:
    """``path`` resolved, if it lies under a library root; :class:`DataError` otherwise.

    ``roots`` defaults to :func:`library_roots`. The message names the path as given, never what a
    link resolves to, so a refusal does not reveal where a link points.
    """
    roots = library_roots() if roots is None else tuple(roots)
    if not is_within_roots(path, roots):
        raise _refusal(str(path), roots)
    return _resolve(path)


def check_spec(spec: str, roots: Optional[Sequence[Path]] = None) -> str:
    """A data-set spec (``default``, ``default:piano``, a folder, a ``.csv``) if it may be read, else
    :class:`DataError`: what the app calls on whatever a visitor typed, before anything else."""
    if not is_default_spec(spec):
        check_path(Path(spec), roots)
    return spec
