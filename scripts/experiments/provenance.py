"""Where a result came from: commit, machine and date, written into every results file.

An experiment's numbers mean something only beside the code and machine that produced them
(issue 13: "records the commit, machine and date").
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def provenance() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "python": sys.version.split()[0],
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def write_results(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=float) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


def one_thread() -> None:
    """One BLAS/OpenMP thread: on a shared 2-core machine, k-means' default threads spin against the
    other processes (a 300-point, 11-k sweep took 204 s with default threads, 14 s with one)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
