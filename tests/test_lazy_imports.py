"""The first page stays light (issue 14): torch, scikit-learn, UMAP, numba and librosa (and pandas, SciPy) are
imported when a model is needed, not when the app, the service or the registry is imported or the first page
drawn; and the facts the registry declares for each network, so that it can be read without importing one,
are the network classes' own.

Each import check runs in a fresh interpreter: the test process has long imported all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from musiclust.models import registry
from musiclust.models.registry import SPECS

REPO = Path(__file__).resolve().parents[1]
# What a model's first use brings in. On a loaded 2-core machine (python -X importtime) torch took 5 s to
# import, pandas 0.7-1 s and scipy.sparse 0.25 s, against 1 s for Streamlit itself.
HEAVY = ("torch", "sklearn", "umap", "numba", "pynndescent", "librosa", "pandas", "scipy")
HEAVY_NOW = f"sorted(m for m in {HEAVY!r} if m in sys.modules)"


def heavy_imported(code: str, env: dict | None = None, timeout: int = 300) -> list[list[str]]:
    """Run ``code`` in a fresh interpreter from the repository; it reports the heavy modules imported so far
    with ``report()``, and once more at its end. Returns those reports in order."""
    script = f"import json, sys\ndef report(): print('HEAVY ' + json.dumps({HEAVY_NOW}))\n{code}\nreport()\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line[len("HEAVY "):]) for line in proc.stdout.splitlines() if line.startswith("HEAVY ")]


def test_importing_the_app_service_and_registry_imports_no_model_library():
    code = ("import musiclust_app\n"
            "from musiclust import service\n"
            "from musiclust.models import registry\n"
            "service.model_catalogue(), service.training_defaults()  # what the sidebar and the first page read\n"
            "assert [s.architecture for s in registry.SPECS.values()] and registry.SPECS['beta_cvae'].conditioned_on_label")
    assert heavy_imported(code) == [[]]


def test_the_check_sees_a_model_library():
    """The check above can fail: resolving a network class imports torch."""
    assert "torch" in heavy_imported("from musiclust.models import registry\nregistry.SPECS['conv_vae'].network")[-1]


def test_first_page_renders_without_a_model_library(trained_checkpoints, real_music_folder, tmp_path):
    """``app.py`` rendered (its default page, the upload page, with trained models): nothing heavy imported;
    then a page that needs the model is opened, and torch comes in."""
    code = ("from streamlit.testing.v1 import AppTest\n"
            "at = AppTest.from_file('app.py', default_timeout=180).run()\n"
            "assert not at.exception, [e.value for e in at.exception]\n"
            "assert at.title[0].value == 'Your track' and at.sidebar.selectbox(key='model_choice').options\n"
            "report()\n"
            "at.switch_page('pages/latent_map.py').run()\n"
            "assert not at.exception, [e.value for e in at.exception]")
    env = {"MUSICLUST_CHECKPOINTS": str(trained_checkpoints), "MUSICLUST_DATA": str(real_music_folder),
           "MUSICLUST_JOBS": str(tmp_path / "jobs")}
    first_page, after_map = heavy_imported(code, env)
    assert first_page == []
    assert "torch" in after_map


def test_registry_declared_facts_are_the_network_classes():
    """A spec declares its network's ``conditioned_on_label`` and ``cluster_on_direction`` (read before any
    model is loaded); resolving the class checks them, and a wrong declaration fails there."""
    for name, spec in SPECS.items():
        network = spec.network
        assert (spec.conditioned_on_label, spec.cluster_on_direction) == (network.conditioned_on_label, network.cluster_on_direction), name
        assert registry.NETWORKS[spec.architecture] is network  # the name checkpoints record
    assert len(registry.NETWORKS_BY_CLASS) == len(registry.ARCHITECTURES)  # no two network names for one class
    assert SPECS["beta_cvae"].conditioned_on_label and SPECS["mvae_poe"].cluster_on_direction
    with pytest.raises(TypeError, match="conditioned_on_label"):
        replace(SPECS["beta_cvae"], conditioned_on_label=False).network
    with pytest.raises(TypeError, match="cluster_on_direction"):
        replace(SPECS["conv_vae"], cluster_on_direction=True).network
