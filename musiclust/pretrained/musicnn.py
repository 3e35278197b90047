"""MusiCNN (Pons & Serra, 2019) in plain PyTorch, with the pretrained weights of the ``musicnn`` wheel.

Why a port: the wheel's own code needs TensorFlow 1.x-style graphs (and pins numpy<1.17), far too
heavy for an embedding baseline. Here the network is ~100 lines of torch, the weights are read at
run time from the wheel's TF-1 checkpoint by :mod:`musiclust.pretrained.tf_checkpoint`, and the
front end (:func:`musicnn_mel`) reproduces the wheel's ``extractor.batch_data`` spectrogram.
Checked against TensorFlow on real music (``tests/test_musicnn.py``, ``tests/data/``).

The network (``models.build_musicnn`` in the wheel), for a log-mel patch x of (T=187 frames, 96 bands):

* front end: batch norm of the input, then "timbral" filters spanning 7 frames x 38 or 67 mel
  bands (204 maps each) and "temporal" filters spanning 128/64/32 frames x 1 band (51 maps each),
  each conv -> ReLU -> batch norm -> max over frequency: 561 features per frame;
* mid end: three 1-D convolutions over time (7 frames, 64 maps, ReLU, batch norm), the last two
  residual; the front- and mid-end features are concatenated: 753 per frame;
* back end: max and mean over time (interleaved, as TF's concat+flatten lays them out), batch
  norm, dense 200 (ReLU, batch norm) = the ``penultimate`` embedding, dense 50 = tag logits.

All batch norms are TF's ``tf.layers.batch_normalization`` in inference mode (epsilon 1e-3).
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from musiclust.errors import AudioError, CheckpointError, ParameterError
from musiclust.pretrained.tf_checkpoint import read_checkpoint

SR = 16000          # the wheel's configuration.py
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1: ~3 s
MODELS = ("MTT_musicnn", "MSD_musicnn")
BN_EPS = 1e-3       # tf.layers.batch_normalization default (torch's is 1e-5)


# ----------------------------------------------------------------------------- the network
class MusiCNN(nn.Module):
    """The musicnn architecture (``build_musicnn``: 1.6x front end, 64 mid-end maps, 200 units)."""

    def __init__(self, n_mels: int = N_MELS, n_classes: int = 50, midend: int = 64, backend: int = 200):
        super().__init__()
        bn = functools.partial(nn.BatchNorm2d, eps=BN_EPS)
        bn1d = functools.partial(nn.BatchNorm1d, eps=BN_EPS)
        n_timbral, n_temporal = int(1.6 * 128), int(1.6 * 32)                    # 204, 51
        self.bn_input = bn(1)
        self.timbral = nn.ModuleList([nn.Conv2d(1, n_timbral, (7, int(f * n_mels))) for f in (0.4, 0.7)])
        self.bn_timbral = nn.ModuleList([bn(n_timbral) for _ in range(2)])
        self.temporal = nn.ModuleList([nn.Conv2d(1, n_temporal, (k, 1)) for k in (128, 64, 32)])
        self.bn_temporal = nn.ModuleList([bn(n_temporal) for _ in range(3)])
        n_front = 2 * n_timbral + 3 * n_temporal                                  # 561
        self.mid = nn.ModuleList([nn.Conv1d(n_front, midend, 7), nn.Conv1d(midend, midend, 7),
                                  nn.Conv1d(midend, midend, 7)])
        self.bn_mid = nn.ModuleList([bn1d(midend) for _ in range(3)])
        n_feat = n_front + 3 * midend                                             # 753
        self.bn_pool = bn1d(2 * n_feat)                                           # 1506
        self.dense = nn.Linear(2 * n_feat, backend)
        self.bn_dense = bn1d(backend)
        self.out = nn.Linear(backend, n_classes)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, T, 96) log-mel patches -> (penultimate (B, 200), logits (B, 50))."""
        x = self.bn_input(mel.unsqueeze(1))                                       # (B, 1, T, 96)
        feats = []
        xp = F.pad(x, (0, 0, 3, 3))                                               # time only: 'same' for 7 frames
        for conv, bn in zip(self.timbral, self.bn_timbral):
            feats.append(bn(F.relu(conv(xp))).amax(dim=3))                        # (B, 204, T)
        for conv, bn in zip(self.temporal, self.bn_temporal):
            k = conv.kernel_size[0]
            h = conv(F.pad(x, (0, 0, (k - 1) // 2, k // 2)))                      # TF 'same': extra pad at the end
            feats.append(bn(F.relu(h)).amax(dim=3))                               # (B, 51, T)
        front = torch.cat(feats, dim=1)                                           # (B, 561, T)
        c1 = self.bn_mid[0](F.relu(self.mid[0](F.pad(front, (3, 3)))))            # (B, 64, T)
        c2 = self.bn_mid[1](F.relu(self.mid[1](F.pad(c1, (3, 3))))) + c1
        c3 = self.bn_mid[2](F.relu(self.mid[2](F.pad(c2, (3, 3))))) + c2
        h = torch.cat([front, c1, c2, c3], dim=1)                                 # (B, 753, T)
        pooled = torch.stack([h.amax(dim=2), h.mean(dim=2)], dim=2).flatten(1)    # (B, 1506): max0, mean0, max1, ...
        pen = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))             # (B, 200)
        return pen, self.out(pen)                                                 # (B, 200), (B, 50)


def _tf_to_torch(model: MusiCNN, w: dict[str, np.ndarray]) -> None:
    """Copy TF variables (creation-order names: conv2d, conv2d_1, ..., batch_normalization_10) in."""
    def put(target: torch.Tensor, src: np.ndarray, name: str) -> None:
        if tuple(src.shape) != tuple(target.shape):
            raise CheckpointError(f"{name} has shape {tuple(src.shape)}, expected {tuple(target.shape)}: "
                                  "a checkpoint of another architecture?")
        target.data.copy_(torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32)))

    bns = [model.bn_input, *model.bn_timbral, *model.bn_temporal, *model.bn_mid, model.bn_pool, model.bn_dense]
    for i, bn in enumerate(bns):
        p = "batch_normalization" + (f"_{i}" if i else "")
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
            put(getattr(bn, ours), w[f"{p}/{theirs}"], f"{p}/{theirs}")
    for i, conv in enumerate([*model.timbral, *model.temporal, *model.mid]):
        p = "conv2d" + (f"_{i}" if i else "")
        k = w[f"{p}/kernel"]                                                      # (kh, kw, in, out)
        # 2-D: (out, in, kh, kw). Mid end: TF slides a (7, C) kernel over a (T, C, 1) map = Conv1d (out, C, 7)
        k = k.transpose(3, 2, 0, 1) if conv.weight.dim() == 4 else k[:, :, 0, :].transpose(2, 1, 0)
        put(conv.weight, k, f"{p}/kernel")
        put(conv.bias, w[f"{p}/bias"], f"{p}/bias")
    for layer, p in ((model.dense, "dense"), (model.out, "dense_1")):
        put(layer.weight, w[f"{p}/kernel"].T, f"{p}/kernel")                      # (in, out) -> (out, in)
        put(layer.bias, w[f"{p}/bias"], f"{p}/bias")


def wheel_dir() -> str:
    """The installed ``musicnn`` wheel's package folder (found without importing it: it imports TF)."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the pretrained MusiCNN weights are missing: install them with "
                              "`pip install --no-deps musicnn==0.1.0`")
    return list(spec.submodule_search_locations)[0]


def _variable_names(n_bn: int = 11, n_conv: int = 8) -> list[str]:
    names = []
    for i in range(n_bn):
        p = "batch_normalization" + (f"_{i}" if i else "")
        names += [f"{p}/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")]
    for i in range(n_conv):
        p = "conv2d" + (f"_{i}" if i else "")
        names += [f"{p}/kernel", f"{p}/bias"]
    return names + ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]


def build_from_checkpoint(prefix: str) -> MusiCNN:
    """A MusiCNN in eval mode with the weights of the TF-1 checkpoint at ``prefix`` (uncached)."""
    w = read_checkpoint(prefix, names=_variable_names())
    model = MusiCNN(n_classes=w["dense_1/bias"].shape[0])
    _tf_to_torch(model, w)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@functools.lru_cache(maxsize=len(MODELS))
def load_musicnn(model: str = "MTT_musicnn") -> MusiCNN:
    """The pretrained network (``'MTT_musicnn'``: MagnaTagATune tags; ``'MSD_musicnn'``: Million
    Song Dataset tags), read from the wheel once per process and cached. Eval mode, no grads."""
    if model not in MODELS:
        raise ParameterError(f"model must be one of {MODELS}, not {model!r}")
    return build_from_checkpoint(os.path.join(wheel_dir(), model) + os.sep)


@functools.lru_cache(maxsize=len(MODELS))
def musicnn_labels(model: str = "MTT_musicnn") -> tuple[str, ...]:
    """The 50 tag names of ``model``, read (as literals, not executed) from the wheel's configuration.py."""
    if model not in MODELS:
        raise ParameterError(f"model must be one of {MODELS}, not {model!r}")
    with open(os.path.join(wheel_dir(), "configuration.py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    want = model.split("_")[0] + "_LABELS"
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == want for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise CheckpointError(f"{want} not found in the musicnn wheel's configuration.py")


# ----------------------------------------------------------------------------- the front end
def musicnn_mel(y_16k: np.ndarray, pad_mode: str = "reflect") -> np.ndarray:
    """Log-compressed mel spectrogram (frames, 96) of mono 16 kHz audio, as the wheel computes it.

    The wheel (``extractor.batch_data``): ``librosa.feature.melspectrogram(sr=16000, n_fft=512,
    hop_length=256, n_mels=96)`` (hann window, centred frames, power 2, Slaney mel scale and area
    normalisation -- the filters are bit-identical from librosa 0.7.2 to 0.11), transposed, cast to
    **float16** (as its training data were stored), then ``np.log10(10000 * x + 1)``. Two points:

    * The wheel pins numpy < 1.17, where ``10000 * float16_array`` promotes to float32 (value-based
      casting). Under numpy >= 2 (NEP 50) it stays float16 and overflows to inf wherever the mel
      power exceeds 6.55 -- 1-2% of bins of ordinary loud music -- and the network then returns
      NaN for that patch. We compute the float32 way, as the wheel did when it was released.
    * ``pad_mode='reflect'``: librosa <= 0.9 (the wheel's era, and its training data) padded the
      centred frames by reflection; librosa >= 0.10 pads with zeros by default, which changes the
      first and last frame only. Pass ``'constant'`` to match the wheel run under a new librosa.

    Returns float32. Needs more than 256 samples.
    """
    if pad_mode not in ("reflect", "constant"):
        raise ParameterError(f"pad_mode must be 'reflect' or 'constant', not {pad_mode!r}")
    y = _check_audio(y_16k)
    if y.size <= N_FFT // 2:
        raise AudioError(f"audio of {y.size} samples is too short for a 512-point spectrogram")
    import librosa

    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                       pad_mode=pad_mode).T                       # (frames, 96) float32
    S16 = S.astype(np.float16).astype(np.float32)                                # the wheel's float16 storage
    return np.log10(np.float32(10000) * S16 + np.float32(1))                     # (frames, 96) float32


def _check_audio(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise AudioError(f"expected mono audio as a 1-D array, got shape {y.shape}; "
                         "downmix first (e.g. librosa.to_mono on a (channels, samples) array)")
    if not np.issubdtype(y.dtype, np.floating):
        raise AudioError(f"expected float audio in [-1, 1], got dtype {y.dtype}")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        raise AudioError("audio holds NaN or Inf samples")
    return y


def mel_patches(mel: np.ndarray, hop_frames: int = PATCH_FRAMES, pad_short: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cut (frames, 96) into (n_patches, 187, 96) patches starting every ``hop_frames`` frames.

    As the wheel's ``batch_data``: the default hop of 187 (its ``input_overlap=False``) gives
    back-to-back patches, and a trailing remainder shorter than a patch is dropped. A spectrogram
    shorter than one patch (< ~3 s of audio) makes the wheel fail; with ``pad_short`` it is
    instead tiled (repeated) up to one patch, else AudioError. Returns (patches, start frames).
    """
    if not isinstance(hop_frames, (int, np.integer)) or hop_frames < 1:
        raise ParameterError(f"hop_frames must be a positive integer, not {hop_frames!r}")
    n = mel.shape[0]
    if n < PATCH_FRAMES:
        if not pad_short or n == 0:
            raise AudioError(f"audio of {n} frames is shorter than one {PATCH_FRAMES}-frame (~3 s) patch")
        mel = np.resize(mel, (PATCH_FRAMES, mel.shape[1]))                        # repeat-pad (tiles rows)
        n = PATCH_FRAMES
    starts = np.arange(0, n - PATCH_FRAMES + 1, hop_frames)
    idx = starts[:, None] + np.arange(PATCH_FRAMES)[None, :]                      # (P, 187)
    return np.ascontiguousarray(mel[idx]), starts


# ----------------------------------------------------------------------------- the embedding
def musicnn_forward(patches: np.ndarray, model: str = "MTT_musicnn", batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(P, T, 96) log-mel patches -> (penultimate (P, 200), taggram (P, 50) sigmoid) as float32."""
    net = load_musicnn(model)
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim != 3 or patches.shape[2] != N_MELS:
        raise ParameterError(f"patches must be (n, frames, {N_MELS}), not {patches.shape}")
    pens, tags = [], []
    with torch.no_grad():
        for i in range(0, len(patches), batch_size):                              # bounded memory: ~10 MB/patch
            pen, logits = net(torch.from_numpy(patches[i:i + batch_size]))
            pens.append(pen.numpy())
            tags.append(torch.sigmoid(logits).numpy())
    if not pens:
        return np.zeros((0, net.dense.out_features), np.float32), np.zeros((0, net.out.out_features), np.float32)
    return np.concatenate(pens), np.concatenate(tags)


def musicnn_embedding(y: np.ndarray, sample_rate: int, model: str = "MTT_musicnn",
                      hop_frames: int = PATCH_FRAMES, pad_short: bool = True, res_type: str = "soxr_hq") -> dict:
    """MusiCNN features of mono audio ``y`` (floats in [-1, 1]) sampled at ``sample_rate``.

    Resamples to 16 kHz with ``librosa.resample(res_type=res_type)``, computes :func:`musicnn_mel`,
    cuts ~3 s patches (:func:`mel_patches`) and runs the network. The wheel's ``librosa.load`` used
    resampy's ``kaiser_best``; soxr_hq differs from it only in the anti-aliasing roll-off, i.e.
    the top 4-5 mel bands (7.4-8 kHz), which on a loud 3 s excerpt moved the penultimate by up to
    0.55 (values up to 2.4) and the taggram by 0.03. ``res_type='kaiser_best'`` (needs
    ``pip install resampy``) reproduces the wheel's 16 kHz audio. Returns a dict of float32 arrays:

    * ``penultimate`` (P, 200) and ``taggram`` (P, 50): per patch, as the wheel's extractor;
    * ``embedding`` (200,) and ``tags`` (50,): their means over the patches (the track level);
    * ``patch_start_s`` (P,): where each patch starts, in seconds;
    * ``labels``: the 50 tag names.
    Deterministic: the same input gives bit-identical output within a process.
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ParameterError(f"sample_rate must be a positive integer, not {sample_rate!r}")
    y = _check_audio(y)
    if sample_rate != SR:
        import librosa

        y = librosa.resample(y, orig_sr=int(sample_rate), target_sr=SR, res_type=res_type).astype(np.float32)
    patches, starts = mel_patches(musicnn_mel(y), hop_frames=hop_frames, pad_short=pad_short)
    pen, tags = musicnn_forward(patches, model=model)
    return {"penultimate": pen, "taggram": tags, "embedding": pen.mean(axis=0), "tags": tags.mean(axis=0),
            "patch_start_s": (starts * HOP / SR).astype(np.float32), "labels": list(musicnn_labels(model))}
