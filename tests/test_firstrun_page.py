"""The first run seen from the app: on the default set with nothing built, the page shows the background
build's progress instead of an error, a second app process starts no second build, and once the build has
saved the models the page offers them. A tiny real manifest (8 clips x 6 s) and 1 epoch keep it short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from streamlit.testing.v1 import AppTest

from test_firstrun import HANG_GUARD_S, REPO, tiny_default  # noqa: F401  (the tiny default set fixture)
from musiclust.serving.firstrun import EPOCHS_ENV, model_order, plan
from musiclust.serving.jobs import RUNNING, SUCCEEDED

APP_TIMEOUT_S = 600  # generous: a loaded 2-core machine imports torch slowly; not a verdict on speed

SECOND_APP = """
import json
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=600)
at.run()
print(json.dumps({"exceptions": [e.value for e in at.exception], "markdown": [m.value for m in at.markdown]}))
"""


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.caption] + [getattr(p, "proto", None) and p.proto.text or "" for p in at.get("progress")]
    return "\n".join(str(p) for p in parts)


def test_page_shows_the_build_then_the_models(tiny_default, monkeypatch):
    monkeypatch.setenv(EPOCHS_ENV, "1")
    monkeypatch.delenv("MUSICLUST_DATA", raising=False)
    jobs = tiny_default["jobs"]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=APP_TIMEOUT_S)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    page = texts(at)
    assert "Setting up the default set" in page, page
    assert not at.error, [e.value for e in at.error]  # no "no trained model" error while the build runs
    status = jobs.status()
    assert status.state == RUNNING
    assert status.args[status.args.index("--epochs") + 1] == "1"
    first_job = status.job_id

    # A second app process (a second run-app) while the build runs: it shows the progress, starts nothing.
    second = subprocess.run([sys.executable, "-c", SECOND_APP], cwd=REPO, env={**os.environ, **tiny_default["env"]},
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert second.returncode == 0, second.stderr[-3000:]
    shown = json.loads(second.stdout.strip().splitlines()[-1])
    assert not shown["exceptions"], shown["exceptions"]
    if jobs.status().state == RUNNING:  # (the build may have ended meanwhile on a fast machine)
        assert any("Setting up the default set" in m for m in shown["markdown"]), shown["markdown"]
    assert jobs.status().job_id == first_job, "a second app process started a second build"

    deadline = time.monotonic() + HANG_GUARD_S
    while jobs.is_running() and time.monotonic() < deadline:
        time.sleep(0.5)
    status = jobs.status()
    assert status.state == SUCCEEDED, f"{status.message}\n{jobs.log_path.read_text()[-3000:]}"
    assert plan("natural", tiny_default["checkpoints"]).done

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=APP_TIMEOUT_S)  # a visitor after the build
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Setting up the default set" not in texts(at)
    model_box = next(s for s in at.sidebar.selectbox if s.label == "Model")
    assert set(model_box.options) == set(model_order())
    assert at.get("file_uploader"), "the upload page offers the models"
