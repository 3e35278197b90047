"""musicnn_vae served like every model: trained and saved by the normal publish path, loaded by the Service,
an upload placed with the MusiCNN vectors of its own audio, a collection track reconstructed and morphed with
its cached vectors, the CLI's predict and train, and the default lists that leave the opt-in model out.

Real data only: the session's rendered corpus clips (``real_table``: 4 groups x 5 clips of 8 s), their
MusiCNN vectors extracted by the real network (cached in the repo's ``data/cache/pretrained``, as training
and serving cache them), one tiny model (2 epochs, latent 8, seed 0).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from musiclust.errors import ParameterError
from musiclust.models.registry import ALL_MODELS, DISPLAY_ORDER, MODEL_NAMES, OPT_IN_MODELS, SPECS

NAME = "musicnn_vae"
PLAIN = "conv_vae"  # a default model beside it: serving it must not touch MusiCNN
SETTINGS = {"epochs": 2, "latent_dim": 8, "seed": 0}


def setup_module(module):
    if importlib.util.find_spec("musicnn") is None:
        pytest.fail("MusiCNN weights absent: run scripts/setup (pip install --no-deps musicnn==0.1.0)", pytrace=False)


@pytest.fixture(scope="module")
def served(real_table, real_music_folder, tmp_path_factory):
    """``(service, checkpoints root, data spec)``: musicnn_vae and conv_vae trained on the real clips and
    saved by :func:`musiclust.publish.train_and_publish`, as ``python -m musiclust train`` does."""
    from musiclust.pipeline import Settings
    from musiclust.publish import train_and_publish
    from musiclust.service import Service, dataset_slug

    assert SPECS[NAME].needs_pretrained and NAME in OPT_IN_MODELS and not SPECS[PLAIN].needs_pretrained
    root, data = tmp_path_factory.mktemp("checkpoints"), str(real_music_folder)
    report = train_and_publish(real_table, [PLAIN, NAME], Settings(**SETTINGS), root / dataset_slug(data), data)
    assert report.trained == [PLAIN, NAME], report.summary()
    service = Service(data, root)
    assert service.models() == sorted([PLAIN, NAME])
    return service, root, data


def closest_pair(space: np.ndarray) -> float:
    """The smallest distance between two different collection tracks."""
    d = np.linalg.norm(space[:, None] - space[None], axis=-1)
    return float(d[~np.eye(len(space), dtype=bool)].min())


def test_an_upload_of_a_collection_track_lands_on_itself(served):
    service, _, _ = served
    bundle = service.bundle(NAME)
    assert bundle.needs_pretrained and not service.bundle(PLAIN).needs_pretrained
    # "The same place": ten times closer than the two closest different tracks (measured at seed 0: the
    # upload at 0.0, the closest pair 8e-4 apart, the median pair 0.7).
    tolerance = closest_pair(bundle.space) / 10
    assert tolerance > 0
    for track in service.track_table(NAME).iloc[[0, 7]].itertuples():  # two groups
        data = open(track.path, "rb").read()
        answer = service.analyse(NAME, data)
        first = answer.placement.neighbours[0]
        assert (first.id, answer.placement.cluster) == (track.id, track.cluster), answer.placement.neighbours
        assert first.distance < tolerance, (first.distance, tolerance)
        # the vectors are what places it: the same mel with another track's vectors lands elsewhere
        other = service.track_table(NAME).iloc[12]
        moved = bundle.place(answer.features.mel_db, None, 1, service.track_vectors(bundle, other.id))
        assert not (moved.neighbours[0].id == track.id and moved.neighbours[0].distance < tolerance)


def test_predict_places_a_file_with_the_opt_in_model(served, capsys):
    from musiclust.__main__ import main

    service, root, data = served
    track = service.track_table(NAME).iloc[3]
    code = main(["predict", track.path, "--model", NAME, "--data", data, "--checkpoints", str(root), "--format", "json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["neighbours"][0]["id"] == track.id and result["cluster"] == track.cluster
    assert result["neighbours"][0]["distance"] < closest_pair(service.bundle(NAME).space) / 10


def test_reconstruction_and_morph_of_collection_tracks(served):
    service, _, _ = served
    frames = service.model(NAME).feature_config.segment_frames
    table = service.track_table(NAME)
    track = table.iloc[5]
    report = service.reconstruction_report([PLAIN, NAME], track_id=track.id)
    assert [r.model for r in report.rows] == [PLAIN, NAME] and not report.skipped
    mel = report.original_db
    assert mel.shape[1] >= frames  # an 8 s clip: whole segments, the trailing part dropped
    recon = report.rows[1].mel_db
    assert recon.shape == (mel.shape[0], mel.shape[1] // frames * frames)
    assert np.isfinite(recon).all() and 0 < report.rows[1].mse_db < np.inf
    # the same file as an upload, its vectors extracted from its bytes: the same reconstruction
    data = open(track.path, "rb").read()
    upload = service.reconstruction_report([NAME], mel_db=mel, audio=data)
    np.testing.assert_allclose(upload.rows[0].mel_db, recon, atol=1e-2)
    with pytest.raises(ParameterError, match="no model to reconstruct with"):
        service.reconstruction_report([NAME], mel_db=mel)  # a spectrogram alone cannot feed it
    assert service.reconstruction_report([PLAIN, NAME], mel_db=mel).skipped.keys() == {NAME}
    walk = service.morph(NAME, track.id, table.iloc[15].id, steps=4)
    assert walk.mel_db.shape == (mel.shape[0], 4 * frames) and np.isfinite(walk.mel_db).all()


def test_a_default_model_is_served_without_importing_musicnn(served):
    """Placing an upload with a model that reads no vectors costs no MusiCNN import (a fresh process)."""
    service, root, data = served
    path = service.track_table(PLAIN).iloc[0].path
    code = (
        "import sys; from pathlib import Path; from musiclust.service import Service;"
        f"a = Service({data!r}, Path({str(root)!r})).analyse({PLAIN!r}, Path({path!r}));"
        "print(a.placement.neighbours[0].id, [m for m in sys.modules if m.startswith('musiclust.pretrained')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out == [service.track_table(PLAIN).iloc[0].id, "[]"], out


def test_train_takes_an_opt_in_model_by_name(served, capsys):
    from musiclust.__main__ import main
    from musiclust.cli.common import model_names

    assert model_names(NAME, ALL_MODELS, MODEL_NAMES) == [NAME]
    assert model_names("all", ALL_MODELS, MODEL_NAMES) == list(MODEL_NAMES) and NAME not in MODEL_NAMES
    with pytest.raises(ParameterError, match="unknown model"):
        model_names(f"{NAME},nope", ALL_MODELS, MODEL_NAMES)
    _, root, data = served  # the model exists: the command parses it, then has nothing to do
    assert main(["train", "--models", NAME, "--if-missing", "--data", data, "--checkpoints", str(root)]) == 0
    assert "nothing to train" in capsys.readouterr().err


def test_first_run_and_the_catalogue_leave_opt_in_models_out_of_the_defaults():
    from musiclust.serving.firstrun import model_order
    from musiclust.service import model_catalogue

    assert OPT_IN_MODELS and not set(model_order()) & set(OPT_IN_MODELS)
    assert set(model_order()) == set(MODEL_NAMES)
    catalogue = model_catalogue()
    assert [m.name for m in catalogue] == list(DISPLAY_ORDER), "every model is offered"
    assert [m.name for m in catalogue if m.opt_in] == [n for n in DISPLAY_ORDER if n in OPT_IN_MODELS]
