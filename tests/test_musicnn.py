"""The PyTorch MusiCNN port against real TensorFlow, and the TF-checkpoint reader against damage.

Reference: ``tests/data/musicnn_reference.npz``, made once by ``tests/data/make_musicnn_reference.py``
with the musicnn wheel's own code under TensorFlow 2.21 (v1 mode) on 4 patches (~3 s each) of
real music. Needs the wheel's weights (``pip install --no-deps musicnn==0.1.0``); downloads nothing.

Tolerances. The port and TF both compute in float32 but sum in different orders (convolutions of
up to 7 x 561 = 3927 terms, a 1506-input dense layer, seven layers deep), so they agree to a few
float32 rounding steps, not bit for bit. Measured on the reference: max |torch - TF| = 7.3e-6 on
the penultimate (values up to 2.4, i.e. 3e-6 relative) and 1.3e-6 on the taggram, for both models.
The bounds below are ~10x that: 1e-4 and 2e-5 -- still 100x smaller than the effect of the
smallest real input difference we know of (librosa's edge padding: 1.6e-2 / 2.1e-3).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from musiclust.errors import AudioError, CheckpointError, ParameterError



def setup_module(module):
    """The weights come from the musicnn wheel that scripts/setup installs; without it every test here
    fails with this one clear message (nothing is skipped on a machine set up by the README's command)."""
    if importlib.util.find_spec("musicnn") is None:
        pytest.fail("MusiCNN weights absent: run scripts/setup (pip install --no-deps musicnn==0.1.0)", pytrace=False)


REF_PATH = Path(__file__).parent / "data" / "musicnn_reference.npz"
PEN_ATOL, TAG_ATOL = 1e-4, 2e-5
# One float16 step of the mel power is a relative change of at most 2**-10, which moves
# log10(10000 x + 1) by at most log10(1 + 2**-10) = 4.2e-4.
MEL_ATOL = float(np.log10(1 + 2.0 ** -10)) + 1e-6


@pytest.fixture(scope="module")
def ref():
    with np.load(REF_PATH) as z:
        return {k: z[k] for k in z.files}


def log_mel(power16):
    return np.log10(np.float32(10000) * power16.astype(np.float32) + np.float32(1))


def audio_a(ref):
    return ref["audio_a"].astype(np.float32) / np.float32(32768)


# ----------------------------------------------------------------------------- (a) port vs TF
@pytest.mark.parametrize("model", ["MTT_musicnn", "MSD_musicnn"])
def test_port_matches_tensorflow(ref, model):
    from musiclust.pretrained.musicnn import musicnn_forward

    x = log_mel(ref["patches16"])                                         # (4, 187, 96)
    pen, tag = musicnn_forward(x, model=model)
    assert pen.dtype == np.float32 and pen.shape == (4, 200) and tag.shape == (4, 50)
    np.testing.assert_allclose(pen, ref[f"tf_{model}_penultimate"], rtol=0, atol=PEN_ATOL)
    np.testing.assert_allclose(tag, ref[f"tf_{model}_taggram"], rtol=0, atol=TAG_ATOL)
    # the test means something: the patches' outputs differ from one another far more than that
    assert np.abs(np.diff(ref[f"tf_{model}_penultimate"], axis=0)).max() > 1000 * PEN_ATOL


def test_audio_to_embedding_matches_tensorflow(ref):
    """End to end from 16 kHz audio: mel (reflect padding, the wheel's era) + network."""
    from musiclust.pretrained.musicnn import musicnn_embedding

    out = musicnn_embedding(audio_a(ref), 16000)
    assert out["penultimate"].shape == (1, 200) and out["taggram"].shape == (1, 50)
    np.testing.assert_allclose(out["penultimate"], ref["tf_MTT_musicnn_penultimate"][:1], rtol=0, atol=PEN_ATOL)
    np.testing.assert_allclose(out["taggram"], ref["tf_MTT_musicnn_taggram"][:1], rtol=0, atol=TAG_ATOL)
    np.testing.assert_array_equal(out["embedding"], out["penultimate"].mean(axis=0))
    assert len(out["labels"]) == 50 and out["labels"][0] == "guitar"


def test_constant_padding_matches_the_wheel_under_new_librosa(ref):
    from musiclust.pretrained.musicnn import musicnn_forward, musicnn_mel

    mel = musicnn_mel(audio_a(ref), pad_mode="constant")
    pen, tag = musicnn_forward(mel[None, :187])
    np.testing.assert_allclose(pen, ref["tf_MTT_musicnn_penultimate_constant_pad_a"], rtol=0, atol=PEN_ATOL)
    np.testing.assert_allclose(tag, ref["tf_MTT_musicnn_taggram_constant_pad_a"], rtol=0, atol=TAG_ATOL)


# ----------------------------------------------------------------------------- (d) the mel
def test_mel_matches_the_wheels_extractor(ref):
    from musiclust.pretrained.musicnn import musicnn_mel

    mel = musicnn_mel(audio_a(ref))
    want = log_mel(ref["mel16_a"])                                        # (188, 96), wheel + librosa 0.7.2
    assert mel.dtype == np.float32 and mel.shape == want.shape
    diff = np.abs(mel - want)
    assert diff.max() <= MEL_ATOL
    assert (diff > 0).mean() < 1e-3        # librosa 0.7 vs 0.11 FFT rounding flips a rare float16 step
    info = json.loads(str(ref["info"]))
    assert info["numpy2_log_equals_numpy1_log"] and info["wheel_today_nan_taggram_a"] == 50


def test_mel_has_no_float16_overflow_on_loud_music(ref):
    """The wheel under numpy 2 turns mel power > 6.55 into inf (NaN outputs); ours stays finite."""
    from musiclust.pretrained.musicnn import musicnn_mel

    loud = audio_a(ref)
    assert (ref["mel16_a"].astype(np.float32) * 10000 > 65504).sum() > 100
    assert np.isfinite(musicnn_mel(loud)).all()


# ----------------------------------------------------------------------------- (c) determinism
def test_embedding_is_bit_identical_on_two_calls(ref):
    from musiclust.pretrained.musicnn import load_musicnn, musicnn_embedding

    y = audio_a(ref)
    for sr, signal in ((16000, y), (22050, y)):                           # 22050: via the resampler
        one, two = musicnn_embedding(signal, sr), musicnn_embedding(signal.copy(), sr)
        for key in ("penultimate", "taggram", "embedding", "tags", "patch_start_s"):
            assert one[key].dtype == np.float32
            assert one[key].tobytes() == two[key].tobytes(), key
    assert load_musicnn() is load_musicnn()
    assert not load_musicnn().training


def test_patching_and_bad_audio(ref):
    from musiclust.pretrained.musicnn import mel_patches, musicnn_embedding, musicnn_mel

    mel = musicnn_mel(np.tile(audio_a(ref), 3))                           # 9 s -> 563 frames -> 3 patches
    patches, starts = mel_patches(mel)
    assert patches.shape == (3, 187, 96) and starts.tolist() == [0, 187, 374]
    np.testing.assert_array_equal(patches[1], mel[187:374])
    assert mel_patches(mel, hop_frames=61)[0].shape[0] == 1 + (563 - 187) // 61
    short, _ = mel_patches(mel[:50])                                      # < 3 s: repeated up to a patch
    np.testing.assert_array_equal(short[0, 50:100], mel[:50])
    with pytest.raises(AudioError):
        mel_patches(mel[:50], pad_short=False)
    with pytest.raises(AudioError):
        musicnn_embedding(np.zeros((2, 16000), np.float32), 16000)
    with pytest.raises(AudioError):
        musicnn_embedding(np.full(16000, np.nan, np.float32), 16000)
    with pytest.raises(AudioError):
        musicnn_embedding(np.zeros(16000, np.int16), 16000)
    with pytest.raises(ParameterError):
        musicnn_embedding(audio_a(ref), 0)
    with pytest.raises(ParameterError):
        musicnn_embedding(audio_a(ref), 16000, model="MTT_vgg")


# ----------------------------------------------------------------------------- (b) the reader
@pytest.fixture(scope="module")
def wheel_prefix():
    from musiclust.pretrained.musicnn import wheel_dir

    return os.path.join(wheel_dir(), "MTT_musicnn") + os.sep


def copy_checkpoint(src_prefix, tmp_path) -> str:
    dst = tmp_path / "ck"
    dst.mkdir()
    for name in (".index", ".data-00000-of-00001"):
        shutil.copy(src_prefix + name, dst / name)
    return str(dst) + os.sep


def test_reader_reads_the_wheel(wheel_prefix):
    from musiclust.pretrained.tf_checkpoint import crc32c, read_checkpoint, read_index

    assert crc32c(b"123456789") == 0xE3069283                             # the CRC-32C check value
    n_shards, index = read_index(wheel_prefix)
    assert n_shards == 1 and len(index) == 150
    w = read_checkpoint(wheel_prefix)
    assert len(w) == 64 and not any("Adam" in k for k in w)               # training state skipped
    assert w["conv2d_1/kernel"].shape == (7, 67, 1, 204) and w["conv2d_1/kernel"].dtype == np.float32
    assert all(np.isfinite(a).all() for a in w.values())


def test_reader_refuses_a_truncated_index(wheel_prefix, tmp_path):
    from musiclust.pretrained.tf_checkpoint import read_checkpoint

    p = copy_checkpoint(wheel_prefix, tmp_path)
    data = Path(p + ".index").read_bytes()
    Path(p + ".index").write_bytes(data[:3000])
    with pytest.raises(CheckpointError, match="magic"):
        read_checkpoint(p)
    Path(p + ".index").write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="shorter than a table footer"):
        read_checkpoint(p)


def test_reader_refuses_a_wrong_magic_and_a_damaged_block(wheel_prefix, tmp_path):
    from musiclust.pretrained.tf_checkpoint import read_checkpoint

    p = copy_checkpoint(wheel_prefix, tmp_path)
    good = Path(p + ".index").read_bytes()
    Path(p + ".index").write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="magic"):
        read_checkpoint(p)
    bad = bytearray(good)
    bad[100] ^= 0x01                                                      # inside the data block
    Path(p + ".index").write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="crc32c mismatch"):
        read_checkpoint(p)


def test_reader_refuses_a_flipped_byte_in_the_data(wheel_prefix, tmp_path):
    from musiclust.pretrained.musicnn import build_from_checkpoint
    from musiclust.pretrained.tf_checkpoint import read_checkpoint, read_index

    p = copy_checkpoint(wheel_prefix, tmp_path)
    entry = read_index(p)[1]["dense/kernel"]
    path = Path(p + ".data-00000-of-00001")
    data = bytearray(path.read_bytes())
    data[entry.offset + entry.size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="crc32c mismatch for 'dense/kernel'"):
        read_checkpoint(p)
    with pytest.raises(CheckpointError, match="dense/kernel"):
        build_from_checkpoint(p)
    path.write_bytes(bytes(data[: entry.offset + 10]))                     # and a truncated data file
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(p, names=["dense/kernel"])


def test_reader_refuses_foreign_files(tmp_path):
    from musiclust.pretrained.tf_checkpoint import read_checkpoint

    rng = np.random.default_rng(0)
    (tmp_path / "rand.index").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="magic"):
        read_checkpoint(str(tmp_path / "rand"))
    with zipfile.ZipFile(tmp_path / "z.index", "w") as zf:
        zf.writestr("weights.bin", b"\0" * 4096)
    with pytest.raises(CheckpointError, match="not a TF checkpoint index"):
        read_checkpoint(str(tmp_path / "z"))
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(str(tmp_path / "absent"))


def test_reader_refuses_a_missing_variable(wheel_prefix):
    from musiclust.pretrained.tf_checkpoint import read_checkpoint

    from musiclust.pretrained.musicnn import build_from_checkpoint

    with pytest.raises(CheckpointError, match="lacks variable"):
        read_checkpoint(wheel_prefix, names=["conv2d/kernel", "conv2d_99/kernel"])
    vgg = wheel_prefix.replace("MTT_musicnn", "MTT_vgg")                   # a valid checkpoint, another network
    with pytest.raises(CheckpointError, match="another architecture"):
        build_from_checkpoint(vgg)


def test_reader_refuses_a_missing_data_file(wheel_prefix, tmp_path):
    from musiclust.pretrained.tf_checkpoint import read_checkpoint

    p = copy_checkpoint(wheel_prefix, tmp_path)
    os.remove(p + ".data-00000-of-00001")
    with pytest.raises(CheckpointError, match="cannot read checkpoint data"):
        read_checkpoint(p)
