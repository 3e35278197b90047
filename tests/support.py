"""Small helpers the tests share: a tree's digest (to prove files unchanged), a bounded wait, and a
pickle payload that proves whether a loader ran code."""

import hashlib
import time
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (following the version links) -> SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def wait_until(predicate, seconds: float, what: str, every: float = 0.2):
    """``predicate()``'s first truthy value, polled every ``every`` s; fails after ``seconds`` (a hang
    guard, generous on purpose: no verdict depends on how fast it comes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


class Pickled:
    """Unpickling this creates ``marker``: proof that a loader ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))
