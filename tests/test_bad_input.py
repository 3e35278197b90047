"""Bad and odd input, generated here from a real rendered clip (nothing binary is committed).

Every bad file must end in a typed :class:`~musiclust.errors.MusiclustError` whose message a person
understands, and must leave the saved models byte-for-byte unchanged. Valid-but-odd audio (other rates,
bit depths, channel counts, containers, silence) must give the same answer as its plain equivalent
(22,050 Hz mono 16-bit WAV of the same sound). The app-level checks (error shown in the page, never a
traceback, lyrics shown as text, odd file names) run the real app through ``AppTest``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from musiclust.features.audio import MAX_SAMPLE_RATE, load_audio
from musiclust.config import FeatureConfig
from musiclust.errors import AudioError, MusiclustError
from musiclust.service import MAX_LYRICS_CHARS, MAX_UPLOAD_BYTES, Service, clean_user_lyrics, dataset_slug
from apptest_support import no_exception, open_app, upload
from crafted_audio import SR, encode, flac_claiming, wav_chunk, wav_with
from support import tree_digest

MODEL = "mvae_poe"  # audio + optional lyrics: the model the app prefers
REPO = Path(__file__).resolve().parents[1]


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(real_clip_paths) -> np.ndarray:
    y, sr = sf.read(real_clip_paths[0], dtype="float32")
    assert sr == SR and y.ndim == 1 and len(y) >= 6 * SR
    return y


@pytest.fixture(scope="module")
def service(trained_checkpoints, real_music_folder) -> Service:
    svc = Service(str(real_music_folder), trained_checkpoints)
    assert MODEL in svc.models()
    return svc


@pytest.fixture(scope="module")
def plain(service, clip):
    """The answer for the plain 22,050 Hz mono 16-bit WAV of the clip."""
    return service.analyse(MODEL, encode(clip, SR, "WAV", "PCM_16"))


@pytest.fixture
def unchanged(service):
    """Asserts after the test that no checkpoint file changed (and no file appeared or vanished)."""
    before = tree_digest(service.root)
    yield
    assert tree_digest(service.root) == before, "saved models changed"


# --- bad input: a clear, typed error ---------------------------------------------------------------
def _bad_cases(y: np.ndarray) -> dict[str, tuple[bytes, str]]:
    wav = encode(y, SR, "WAV", "PCM_16")
    mp3 = encode(np.tile(y, 6), SR, "MP3")  # ~48 s, so its middle excerpt starts past the cut
    nan = y.copy()
    nan[SR] = np.nan
    inf = y.copy()
    inf[2 * SR] = np.inf
    neg_inf_stereo = np.stack([y, y], axis=1)
    neg_inf_stereo[SR, 1] = -np.inf
    return {
        "empty file": (b"", r"empty \(0 bytes\)"),
        "text renamed .wav": ("Lyrics, not audio.\nLa la la.\n".encode() * 40, r"not audio that can be decoded"),
        "html renamed .wav": (b"<html><script>alert(1)</script></html>" * 30, r"not audio that can be decoded"),
        "wav cut inside its header": (wav[:30], r"not audio that can be decoded"),
        "wav header only": (wav[: wav_chunk(wav, b"data") + 8], r"no audio samples|0\.00 s long|not audio"),
        "wav cut to 0.3 s": (wav[: wav_chunk(wav, b"data") + 8 + int(0.3 * SR) * 2], r"0\.30 s long; at least 1 s"),
        "mp3 cut to its first 200 bytes": (mp3[:200], r"not audio that can be decoded|truncated"),
        "mp3 cut to 0.5 s": (mp3[: len(mp3) // 100], r"seems truncated or damaged: its header promises 4\d\.\d s"),
        "1 sample": (encode(y[:1], SR, "WAV", "PCM_16"), r"0\.00 s long; at least 1 s"),
        "0.5 s of audio": (encode(y[: SR // 2], SR, "WAV", "PCM_16"), r"0\.50 s long; at least 1 s"),
        "NaN float samples": (encode(nan, SR, "WAV", "FLOAT"), r"NaN or infinite"),
        "Inf float samples": (encode(inf, SR, "WAV", "FLOAT"), r"NaN or infinite"),
        "-Inf in one of two channels": (encode(neg_inf_stereo, SR, "WAV", "DOUBLE"), r"NaN or infinite"),
        "float samples 1e20 x full scale": (encode(y * 1e20, SR, "WAV", "FLOAT"), r"far beyond full scale"),
        "header claiming 10 hours (FLAC)": (flac_claiming(encode(y, SR, "FLAC"), 10 * 3600 * SR), r"600 minutes long; the limit is 20"),
        "header claiming 10 hours (WAV rate)": (wav_with(wav, rate=5), r"minutes long; the limit is 20"),
        "header claiming 1 GHz": (wav_with(wav, rate=1_000_000_000), r"sample rate of 1,000,000,000 Hz"),
    }


BAD_NAMES = list(_bad_cases(np.zeros(8 * SR, np.float32)))


@pytest.fixture(scope="module")
def bad_cases(clip) -> dict[str, tuple[bytes, str]]:
    return _bad_cases(clip)


@pytest.mark.parametrize("case", BAD_NAMES)
def test_bad_upload_gives_a_clear_error_and_changes_nothing(service, bad_cases, unchanged, case):
    data, message = bad_cases[case]
    with pytest.raises(AudioError, match=message) as info:
        service.analyse(MODEL, data, "some lyrics")
    text = str(info.value)
    assert "Traceback" not in text and "<" not in text.replace("<html>", "") and len(text) < 300, text
    assert not text.startswith("Error opening"), "libsndfile's raw message (with a Python repr) leaked"


def test_duration_and_rate_caps_are_checked_before_any_sample_is_read(clip, monkeypatch):
    """A header claiming 10 hours (or an absurd rate) is refused from the header alone."""

    def no_read(*args, **kwargs):
        raise AssertionError("samples were read before the header was checked")

    monkeypatch.setattr(sf.SoundFile, "read", no_read)
    monkeypatch.setattr(sf, "read", no_read)
    flac = flac_claiming(encode(clip, SR, "FLAC"), 10 * 3600 * SR)
    assert sf.info(io.BytesIO(flac)).duration == pytest.approx(36000)
    for data in (flac, wav_with(encode(clip, SR, "WAV", "PCM_16"), rate=5),
                 wav_with(encode(clip, SR, "WAV", "PCM_16"), rate=MAX_SAMPLE_RATE + 1)):
        with pytest.raises(AudioError, match="minutes long|sample rate"):
            load_audio(data, FeatureConfig())


def test_file_over_the_upload_limit_is_refused_before_decoding(service, clip, unchanged, monkeypatch):
    """A valid WAV just over 50 MB (the clip tiled): refused by size, decoder never called."""
    reps = MAX_UPLOAD_BYTES // (len(clip) * 2) + 1
    big = encode(np.tile(clip, reps), SR, "WAV", "PCM_16")
    assert len(big) > MAX_UPLOAD_BYTES
    monkeypatch.setattr(sf, "info", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    with pytest.raises(AudioError, match=r"MB; the upload limit is 50 MB"):
        service.analyse(MODEL, big)


def test_truncated_files_use_the_audio_that_is_present(service, clip, unchanged):
    """A partial download (wav or mp3 cut after its header) is analysed from what decodes: the same
    answer as a plain file holding exactly that audio."""
    wav = encode(clip, SR, "WAV", "PCM_16")
    cut = wav[: wav_chunk(wav, b"data") + 8 + 4 * SR * 2 + 1]  # 4 s and an odd byte
    answer = service.analyse(MODEL, cut)
    same = service.analyse(MODEL, encode(clip[: 4 * SR], SR, "WAV", "PCM_16"))
    assert answer.features.duration == pytest.approx(4.0, abs=1e-3)
    np.testing.assert_array_equal(answer.features.mel_db, same.features.mel_db)
    assert answer.placement.cluster == same.placement.cluster

    long = np.tile(clip, 6)  # 48 s: the middle 30 s excerpt would start at 9 s
    mp3 = encode(long, SR, "MP3")
    for fraction in (0.15, 0.5):  # cut before and inside the excerpt the header promises
        part = service.analyse(MODEL, mp3[: int(len(mp3) * fraction)])
        assert 0.7 * fraction * 48 < part.features.duration <= 30.0, (fraction, part.features.duration)
        assert np.isfinite(part.features.mel_db).all() and 0 <= part.placement.cluster < service.bundle(MODEL).k
    flac = encode(long, SR, "FLAC")
    part = service.analyse(MODEL, flac[: len(flac) // 10])  # flac decoder loses sync at the cut
    assert 2.0 < part.features.duration < 6.0


def test_header_claiming_more_frames_than_exist_gives_the_plain_answer(service, clip, plain, unchanged):
    wav = encode(clip, SR, "WAV", "PCM_16")
    for size in (0xFFFFFFF0, 10 * 3600 * SR * 2):
        answer = service.analyse(MODEL, wav_with(wav, data_size=size))
        np.testing.assert_array_equal(answer.features.mel_db, plain.features.mel_db)
        assert answer.placement.cluster == plain.placement.cluster


# --- valid but odd: the same answer as the plain equivalent ---------------------------------------
def _point(bundle, mel_db: np.ndarray) -> np.ndarray:
    return bundle.scaler(bundle.raw_embedding([mel_db], [None]))[0]


@pytest.fixture(scope="module")
def clip_row(service, real_clip_paths) -> int:
    """The collection row of the clip itself: the test collection holds this very recording."""
    rows = [i for i, t in enumerate(service.bundle(MODEL).tracks) if Path(t["path"]).name == real_clip_paths[0].name]
    assert len(rows) == 1
    return rows[0]


def map_spacing(bundle) -> float:
    """The map's resolution: the median distance from a track's map position to its nearest other track's."""
    gaps = np.linalg.norm(bundle.coords[:, None, :] - bundle.coords[None, :, :], axis=2)  # (N, N)
    np.fill_diagonal(gaps, np.inf)
    return float(np.median(gaps.min(axis=1)))


def _same_answer(odd, reference, atol_db: float, what: str, bundle, lossy: bool = False, recording: int | None = None) -> None:
    """Lossless odd formats: the same cluster, the same nearest track, and a map position closer to the
    plain file's than neighbouring tracks sit on the map (its median nearest-neighbour spacing: a person
    sees the two at one spot). Every format, lossy ones (8-bit, OGG, MP3) too, which change the sound a
    little: the odd file is closer to the plain file in the model's space than any collection track is
    (``recording``, the collection's copy of this very recording when it holds one, is not "another track")."""
    n = min(odd.features.mel_db.shape[1], reference.features.mel_db.shape[1])
    diff = np.abs(odd.features.mel_db[:, :n] - reference.features.mel_db[:, :n])
    assert abs(odd.features.mel_db.shape[1] - reference.features.mel_db.shape[1]) <= 2, what
    assert float(np.median(diff)) <= atol_db, f"{what}: median mel difference {np.median(diff):.2f} dB"
    a, b = _point(bundle, odd.features.mel_db), _point(bundle, reference.features.mel_db)
    to_plain = float(np.linalg.norm(a - b))
    others = np.delete(bundle.space, [recording] if recording is not None else [], axis=0)
    to_collection = float(np.linalg.norm(others - b, axis=1).min())
    assert to_plain < to_collection, f"{what}: {to_plain:.3f} from the plain file, a collection track at {to_collection:.3f}"
    if lossy:
        return
    assert odd.placement.cluster == reference.placement.cluster, what
    assert odd.placement.neighbours[0].id == reference.placement.neighbours[0].id, f"{what}: another nearest track"
    shift = float(np.hypot(*np.subtract(odd.placement.coords, reference.placement.coords)))
    spacing = map_spacing(bundle)
    assert shift < spacing, f"{what}: moved {shift:.3f} on the map, where neighbouring tracks sit {spacing:.3f} apart"


@pytest.mark.parametrize("rate", [44100, 96000, 192000])
def test_higher_rates_give_the_plain_answer(service, clip, unchanged, rate):
    """The plain equivalent of a 44.1-192 kHz file is that sound at 22,050 Hz (converted by soxr's best
    resampler), not the clip it was made from: no resampler keeps the last ~5 % below 11,025 Hz, so the
    two top mel bands of the original clip (content at -40 to -50 dB) drop by 6 and 24 dB in any
    22,050 Hz rendition of the high-rate file. Standardised per band, that moved the product of experts'
    audio-only point 0.15 in its unit space and 0.47 on a map 5 wide; compared with the same sound it
    moves 0.003 and 0.008."""
    up = soxr.resample(clip, SR, rate, quality="VHQ")
    reference = service.analyse(MODEL, encode(soxr.resample(up, rate, SR, quality="VHQ"), SR, "WAV", "PCM_16"))
    _same_answer(service.analyse(MODEL, encode(up, rate, "WAV", "PCM_24")), reference, 0.05, f"{rate} Hz", service.bundle(MODEL))


def test_8_khz_gives_the_answer_of_the_same_band_limited_sound(service, clip, unchanged):
    low = soxr.resample(clip, SR, 8000, quality="VHQ")
    reference = service.analyse(MODEL, encode(soxr.resample(low, 8000, SR, quality="VHQ"), SR, "WAV", "FLOAT"))
    _same_answer(service.analyse(MODEL, encode(low, 8000, "WAV", "PCM_16")), reference, 0.5, "8 kHz", service.bundle(MODEL))


@pytest.mark.parametrize("subtype, tol", [("PCM_U8", 3.0), ("PCM_24", 0.01), ("PCM_32", 0.01), ("FLOAT", 0.01), ("DOUBLE", 0.01)])
def test_bit_depths_give_the_plain_answer(service, clip, plain, clip_row, unchanged, subtype, tol):
    odd = service.analyse(MODEL, encode(clip, SR, "WAV", subtype))
    _same_answer(odd, plain, tol, subtype, service.bundle(MODEL), lossy=subtype == "PCM_U8", recording=clip_row)


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channel_counts_give_the_plain_answer(service, clip, plain, clip_row, unchanged, channels):
    data = np.repeat(clip[:, None], channels, axis=1) if channels > 1 else clip
    _same_answer(service.analyse(MODEL, encode(data, SR, "WAV", "PCM_16")), plain, 0.01, f"{channels} channels", service.bundle(MODEL),
                 recording=clip_row)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3"])
def test_containers_give_the_plain_answer(service, clip, plain, clip_row, unchanged, fmt):
    tol = 0.01 if fmt == "FLAC" else 3.0  # lossy codecs change the spectrum a little
    _same_answer(service.analyse(MODEL, encode(clip, SR, fmt)), plain, tol, fmt, service.bundle(MODEL), lossy=fmt != "FLAC",
                 recording=clip_row)


def test_six_channel_192k_24_bit_flac_is_decoded_in_bounded_memory(service, clip, plain, unchanged):
    """The heaviest ordinary upload: mixed to mono block by block, so memory does not scale with channels."""
    import tracemalloc

    up = soxr.resample(np.tile(clip, 4), SR, 192000, quality="HQ")  # 32 s
    data = encode(np.repeat(up[:, None], 6, axis=1), 192000, "FLAC", "PCM_24")
    tracemalloc.start()
    try:
        audio = load_audio(data, FeatureConfig())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(audio) == 30 * SR
    # 30 s of 6-channel float32 at 192 kHz is 138 MB; mono at the source rate is 23 MB
    assert peak < 80 * 2**20, f"decoding peaked at {peak / 2**20:.0f} MB"


def test_silence_is_placed_and_odd_silence_gives_the_same_answer(service, clip, unchanged):
    plain_silence = service.analyse(MODEL, encode(np.zeros_like(clip), SR, "WAV", "PCM_16"))
    p = plain_silence.placement
    assert np.isfinite([p.distance_to_centre, p.cluster_median_distance, *p.coords]).all()
    assert 0 <= p.cluster < service.bundle(MODEL).k and len(p.neighbours) == 5
    odd = np.zeros((len(clip) * 96000 // SR, 6), np.float32)
    _same_answer(service.analyse(MODEL, encode(odd, 96000, "FLAC", "PCM_24")), plain_silence, 0.0, "silence, 96 kHz 6 ch", service.bundle(MODEL))


def test_full_scale_clipping_is_placed_like_its_plain_equivalent(service, clip, unchanged):
    clipped = np.clip(clip * 50, -1.0, 1.0)
    reference = service.analyse(MODEL, encode(clipped, SR, "WAV", "FLOAT"))
    assert np.isfinite(reference.features.mel_db).all()
    _same_answer(service.analyse(MODEL, encode(clipped, SR, "WAV", "PCM_16")), reference, 0.05, "clipped 16-bit", service.bundle(MODEL))
    over = clip * 50  # float audio 34 dB over full scale (finite, under the garbage limit): placed, all finite
    loud = service.analyse(MODEL, encode(over, SR, "WAV", "FLOAT"))
    assert np.isfinite(loud.features.mel_db).all() and 0 <= loud.placement.cluster < service.bundle(MODEL).k


# --- lyrics ------------------------------------------------------------------------------------
def test_one_megabyte_of_lyrics_is_bounded(service, clip, unchanged):
    words = ("Herr Gott dich loben alle wir und sollen billig danken dir " * 20_000)[: 2**20]
    assert len(clean_user_lyrics(words)) <= MAX_LYRICS_CHARS, "cut before any work is done on it"
    answer = service.analyse(MODEL, encode(clip, SR, "WAV", "PCM_16"), words)
    bounded = service.analyse(MODEL, encode(clip, SR, "WAV", "PCM_16"), words[:MAX_LYRICS_CHARS])
    assert answer.placement.cluster == bounded.placement.cluster
    assert answer.placement.coords == pytest.approx(bounded.placement.coords)


def test_binary_and_html_lyrics_are_plain_text(service, clip, unchanged):
    binary = bytes(range(256)).decode("latin-1") * 50
    cleaned = clean_user_lyrics(binary)
    assert cleaned is not None and all(ch.isprintable() or ch in "\n\t" for ch in cleaned)
    assert clean_user_lyrics("\x00\x01\x02\x7f") is None
    answer = service.analyse(MODEL, encode(clip, SR, "WAV", "PCM_16"), binary)
    assert np.isfinite(answer.placement.coords).all()
    html = "<script>alert('x')</script><img src=x onerror=alert(1)> Herr Gott"
    assert clean_user_lyrics(html) == html, "lyrics are data: kept verbatim, the page shows them as text"
    with pytest.raises(MusiclustError):
        clean_user_lyrics(b"bytes, not text")  # type: ignore[arg-type]


# --- the app: what a person sees --------------------------------------------------------------

def _models(app_env) -> Path:
    checkpoints, data = app_env
    return checkpoints / dataset_slug(data)


def test_app_shows_every_bad_upload_as_an_error_never_a_traceback(app_env, clip, bad_cases):
    before = tree_digest(_models(app_env))
    at = open_app()
    no_exception(at)
    cases = dict(bad_cases)
    cases["over the upload limit"] = (encode(np.tile(clip, MAX_UPLOAD_BYTES // (len(clip) * 2) + 1), SR, "WAV", "PCM_16"), "upload limit")
    for case, (data, message) in cases.items():
        name = case.replace(" ", "_") + ".wav"
        upload(at, name=name, data=data)
        assert not at.exception, (case, [e.value for e in at.exception])
        errors = [str(e.value).replace("\\", "") for e in at.error]  # the page escapes Markdown in names
        assert len(errors) == 1 and name in errors[0], (case, errors)
        import re

        assert re.search(message, errors[0]), (case, errors[0])
        assert not at.success, f"{case}: a bad file shows the error and nothing else"
    assert tree_digest(_models(app_env)) == before, "checkpoint files are byte-for-byte unchanged"


ODD_NAMES = [
    "../../../../tmp/musiclust-escape.wav",
    "..\\..\\windows\\system32\\x.wav",
    "/etc/passwd.wav",
    "Bach – Chorale «Herr Gott» 合唱 🎵 ñ.wav",
    "x" * 496 + ".wav",
    "[link](https://example.com) **bold** <b>html</b>.wav",
]


def test_app_never_uses_an_uploaded_name_as_a_path(app_env, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything the app wrote relative to the cwd would land here
    before_cwd = sorted(p.name for p in tmp_path.iterdir())
    escape = Path("/tmp/musiclust-escape.wav")
    escape.unlink(missing_ok=True)
    at = open_app()
    no_exception(at)
    good = encode(clip, SR, "WAV", "PCM_16")
    for name in ODD_NAMES:
        upload(at, name=name, data=good)
        assert not at.exception, (name, [e.value for e in at.exception])
        assert not at.error, (name, [e.value for e in at.error])
        success = [str(s.value) for s in at.success]
        assert success and "lands in cluster" in success[0], (name, success)
        assert at.session_state["last_upload"]["name"] == name
    assert not escape.exists(), "an uploaded name was used as a path"
    assert sorted(p.name for p in tmp_path.iterdir()) == before_cwd, "the app wrote files into the working folder"


def test_app_shows_huge_binary_and_html_lyrics_as_text(app_env, clip):
    at = open_app()
    no_exception(at)
    good = encode(clip, SR, "WAV", "PCM_16")
    html = "<script>alert('x')</script><img src=x onerror=alert(1)> Herr Gott, dich loben wir"
    binary = bytes(range(256)).decode("latin-1")
    for lyrics in (html, binary, "Herr Gott dich loben wir " * 42_000):
        at.text_area(key="lyrics").set_value(lyrics).run()
        upload(at, name="chorale.wav", data=good)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        shown = [str(t.value) for t in at.text]
        # the widget holds at most max_chars (20,000): a megabyte pasted is cut there, never passed on whole
        assert lyrics[:MAX_LYRICS_CHARS].strip() in [t.strip() for t in shown], "lyrics shown verbatim as plain text (st.text)"
        assert max(map(len, shown)) <= MAX_LYRICS_CHARS
        for md in at.markdown:
            assert "<script" not in str(md.value) and "onerror" not in str(md.value)
        assert not any(getattr(md.proto, "allow_html", False) for md in at.markdown if "Herr" in str(md.value))
