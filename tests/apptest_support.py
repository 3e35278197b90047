"""What the tests that drive the app through ``streamlit.testing.v1.AppTest`` share: open a page, upload a
file, start a retrain from the sidebar, and read what the page shows. The environments the app is
pointed at (``app_env``, ``own_env``) are fixtures in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = ("pages/upload.py", "pages/latent_map.py", "pages/reconstructions.py", "pages/metrics.py")
TIMEOUT = 180


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in getattr(at, kind)]


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def upload(at: AppTest, path: Path | None = None, name: str | None = None, data: bytes | None = None) -> AppTest:
    """Upload ``path`` (or ``data`` under ``name``: the name is sent as it is, path parts and all)."""
    at.file_uploader[0].set_value((name or path.name, data if data is not None else path.read_bytes(), "audio/wav"))
    return at.run()


def start_from_sidebar(at: AppTest, models: list[str], epochs: int) -> AppTest:
    at.multiselect(key="retrain_models").set_value(models)
    at.number_input(key="retrain_epochs").set_value(epochs)
    at.number_input(key="retrain_latent").set_value(8)
    return at.button(key="retrain_start").click().run()
