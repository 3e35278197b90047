"""Make ``tests/data/musicnn_reference.npz``: real TensorFlow's MusiCNN outputs on real music.

Run ONCE, by hand, in two throwaway virtual environments outside the repository; the tests never
run it (they only read the .npz it writes). It uses the ``musicnn`` wheel's *own* code: its
``extractor.batch_data`` for the spectrogram (under the librosa of the wheel's era) and its
``models.define_model`` + ``tf.train.Saver.restore`` for the network (under TensorFlow 2 in v1 mode).

Audio source and licence
------------------------
Three excerpts of the game music of Frozen-Bubble, from Debian's ``frozen-bubble-data`` package
(2.212-11, ``/usr/share/games/frozen-bubble/snd/``): ``frozen-mainzik-1p.ogg``,
``introzik.ogg`` and ``frozen-mainzik-2p.ogg``. Copyright 2000-2010 The Frozen-Bubble Team,
licence GPL-2 (Debian's ``/usr/share/doc/frozen-bubble-data/copyright``); redistribution is
allowed under the GPL-2. The .npz holds 3 s of excerpt "a" as 16 kHz 16-bit audio plus
float16 mel spectrograms derived from all three excerpts, and is distributed under the GPL-2 with
that notice (stored in the file as ``notice``).

Steps (paths are examples)
--------------------------
1. Audio, and the wheel-era spectrogram (librosa 0.7.2 needs numpy < 1.24 and a Python-3.11
   numba; librosa 0.7.2 imports ``numba.decorators``, gone from numba 0.57, hence a one-line shim)::

     apt-get download frozen-bubble-data && dpkg-deb -x frozen-bubble-data_*.deb /tmp/fb
     python3 -m venv /tmp/oldlib
     /tmp/oldlib/bin/pip install numpy==1.23.5 numba==0.57.1 librosa==0.7.2 "scipy<1.11" \\
         "scikit-learn<1.3" soundfile
     echo "from numba import jit" > /tmp/oldlib/lib/python3.11/site-packages/numba/decorators.py
     /tmp/oldlib/bin/pip download --no-deps musicnn==0.1.0 -d /tmp/whl && \\
         (cd /tmp/whl && python3 -m zipfile -e musicnn-0.1.0-py3-none-any.whl /tmp/whl/x)
     /tmp/oldlib/bin/python make_musicnn_reference.py mel --wheel /tmp/whl/x/musicnn \\
         --music /tmp/fb/usr/share/games/frozen-bubble/snd --work /tmp/musicnn_ref

2. TensorFlow (``tf.compat.v1.layers`` needs Keras 2, i.e. tf-keras and TF_USE_LEGACY_KERAS=1)::

     python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras librosa
     /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
     TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python make_musicnn_reference.py tf \\
         --work /tmp/musicnn_ref --out tests/data/musicnn_reference.npz

3. Optional cross-check against the graph saved at training time (prints only)::

     TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python make_musicnn_reference.py meta --out tests/data/musicnn_reference.npz

What the .npz holds (patch = 187 frames x 96 mel bands, ~3 s)
-------------------------------------------------------------
``audio_a`` (48000,) int16, excerpt "a" at 16 kHz (divide by 32768 for the wheel's float audio);
``mel16_a`` (188, 96) float16: the wheel's float16 mel power of ``audio_a`` (before the log);
``patches16`` (4, 187, 96) float16: the mel power of patches a0, b0, b1, c0 (``patch_ids``);
``tf_<model>_penultimate`` (4, 200) / ``tf_<model>_taggram`` (4, 50) for MTT_musicnn and
MSD_musicnn: TensorFlow on ``np.log10(10000 * patches16.astype(float32) + 1)``;
``tf_MTT_musicnn_{penultimate,taggram}_constant_pad_a``: TF on patch a0 computed with librosa
0.11's default (zero) padding, to size that librosa difference; ``info``: JSON with versions,
sources and the numpy-2 overflow counts described in ``musiclust/pretrained/musicnn.py``.
"""
import argparse
import ast
import json
import os
import sys

import numpy as np

SR = 16000
# (id, file, start in seconds, samples, patches kept): a loud passage, a loud one, a quiet one.
EXCERPTS = [("a", "frozen-mainzik-1p.ogg", 48.0, 48000, 1),
            ("b", "introzik.ogg", 12.0, 96000, 2),
            ("c", "frozen-mainzik-2p.ogg", 98.8, 48000, 1)]
NOTICE = ("Derived from Frozen-Bubble game music (frozen-mainzik-1p.ogg, introzik.ogg, frozen-mainzik-2p.ogg; "
          "Debian package frozen-bubble-data 2.212-11). Copyright 2000-2010 The Frozen-Bubble Team. "
          "Licence: GNU GPL version 2. This file (excerpt audio and mel spectrograms) is distributed under the GPL-2.")


def wheel_function(wheel_dir, name, namespace):
    """Exec one function's source from the wheel's extractor.py (its module imports TensorFlow)."""
    src = open(os.path.join(wheel_dir, "extractor.py")).read()
    for node in ast.parse(src).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            exec(compile(ast.Module([node], []), "musicnn/extractor.py", "exec"), namespace)
            return namespace[name]
    raise SystemExit(f"{name} not in extractor.py")


def stage_mel(args):
    import types

    import librosa
    import soundfile as sf

    assert librosa.__version__.startswith("0.7"), librosa.__version__
    config = types.ModuleType("config")
    exec(open(os.path.join(args.wheel, "configuration.py")).read(), config.__dict__)
    batch_data = wheel_function(args.wheel, "batch_data", {"np": np, "librosa": librosa, "config": config})
    os.makedirs(args.work, exist_ok=True)
    out = {}
    for eid, fname, start, n, n_patches in EXCERPTS:
        y, _ = librosa.load(os.path.join(args.music, fname), sr=SR)    # the wheel-era loader: mono, resampy
        seg = y[int(start * SR):int(start * SR) + n]
        q = np.clip(np.round(seg * 32768), -32768, 32767).astype(np.int16)
        wav = os.path.join(args.work, f"{eid}.wav")
        sf.write(wav, q, SR, subtype="PCM_16")
        batch, rep = batch_data(wav, 187, 187)                          # the wheel's own code, input_overlap=False
        # the same librosa call, stopped before the log, to keep the float16 mel power (2 bytes a value)
        audio, _ = librosa.load(wav, sr=SR)
        assert np.array_equal(audio, q / np.float32(32768))
        S16 = librosa.feature.melspectrogram(y=audio, sr=SR, hop_length=256, n_fft=512, n_mels=96).T.astype(np.float16)
        assert rep.dtype == np.float32 and np.array_equal(np.log10(10000 * S16 + 1), rep)  # numpy<2: float32 log
        assert batch.shape[0] == n_patches, batch.shape
        out[f"audio_{eid}"], out[f"mel16_{eid}"], out[f"batch_{eid}"] = q, S16, batch
        print(eid, fname, q.shape, S16.shape, batch.shape, "float16 overflows under numpy 2:",
              int((S16.astype(np.float32) * 10000 > 65504).sum()))
    out["versions"] = json.dumps({"librosa": librosa.__version__, "numpy": np.__version__})
    np.savez(os.path.join(args.work, "stage_mel.npz"), **out)


def stage_tf(args):
    import tensorflow as tf
    import librosa

    tf.compat.v1.disable_eager_execution()
    from musicnn import configuration as config
    from musicnn import extractor, models

    wheel = os.path.dirname(models.__file__)
    st = np.load(os.path.join(args.work, "stage_mel.npz"))
    ids, patches16, batches = [], [], []
    for eid, _, _, _, n_patches in EXCERPTS:
        for p in range(n_patches):
            ids.append(f"{eid}{p}")
            patches16.append(st[f"mel16_{eid}"][p * 187:(p + 1) * 187])
            batches.append(st[f"batch_{eid}"][p])
    patches16 = np.stack(patches16)                                         # (4, 187, 96) float16
    x_in = np.log10(np.float32(10000) * patches16.astype(np.float32) + np.float32(1))
    same_log = bool(np.array_equal(x_in, np.stack(batches)))                # numpy 2.x log10 == numpy 1.23's?

    # librosa 0.11 (zero padding by default) on excerpt a, float32 log as the test computes
    audio_a = st["audio_a"].astype(np.float32) / 32768
    S_new = librosa.feature.melspectrogram(y=audio_a, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    x_const = np.log10(np.float32(10000) * S_new.astype(np.float16).astype(np.float32) + 1)[None, :187]

    def run(model, feeds):
        """The wheel's extractor(), lines for graph, restore and run, on given log-mel patches."""
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
            is_training = tf.compat.v1.placeholder(tf.bool)
            y, *_, penultimate = models.define_model(x, is_training, model, 50)
            normalized_y = tf.nn.sigmoid(y)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().restore(sess, os.path.join(wheel, model) + "/")
            outs = []
            for feed in feeds:
                pen, tag = [], []
                for i in range(len(feed)):                                  # batch size 1, as the wheel
                    t, p = sess.run([normalized_y, penultimate], feed_dict={x: feed[i:i + 1], is_training: False})
                    tag.append(t)
                    pen.append(p)
                outs.append((np.concatenate(pen), np.concatenate(tag)))
        return outs

    out = {"audio_a": st["audio_a"], "mel16_a": st["mel16_a"], "patches16": patches16,
           "patch_ids": np.array(ids), "notice": np.array(NOTICE)}
    for model in ("MTT_musicnn", "MSD_musicnn"):
        feeds = [x_in, x_const] if model == "MTT_musicnn" else [x_in]
        res = run(model, feeds)
        out[f"tf_{model}_penultimate"], out[f"tf_{model}_taggram"] = res[0]
        if model == "MTT_musicnn":
            out[f"tf_{model}_penultimate_constant_pad_a"], out[f"tf_{model}_taggram_constant_pad_a"] = res[1]

    # the wheel end to end, as a user of it would run it today (numpy 2, librosa 0.11)
    taggram, _, feats = extractor.extractor(os.path.join(args.work, "a.wav"), model="MTT_musicnn")
    _, rep_new = extractor.batch_data(os.path.join(args.work, "a.wav"), 187, 187)
    info = {"stage_mel": json.loads(str(st["versions"])), "tensorflow": tf.__version__,
            "numpy": np.__version__, "librosa": librosa.__version__, "excerpts": EXCERPTS,
            "numpy2_log_equals_numpy1_log": same_log,
            "wheel_today_inf_bins_a": int(np.isinf(rep_new).sum()),
            "wheel_today_nan_taggram_a": int(np.isnan(taggram).sum()),
            "wheel_today_nan_penultimate_a": int(np.isnan(feats["penultimate"]).sum())}
    out["info"] = np.array(json.dumps(info))
    print(json.dumps(info, indent=1))
    np.savez_compressed(args.out, **out)
    print(args.out, os.path.getsize(args.out), "bytes")


def stage_meta(args):
    """Cross-check (prints only): the graph saved at training time (``.meta``, TF 1.12), pruned to
    inference and loaded with TF's own checkpoint reader, against the reference the wheel's
    models.py gave. Measured: within 1e-6 (penultimate) and 2.1e-7 (taggram) for both models."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    tf.compat.v1.disable_eager_execution()
    import musicnn

    wheel = os.path.dirname(musicnn.__file__)
    ref = np.load(args.out)
    x_in = np.log10(np.float32(10000) * ref["patches16"].astype(np.float32) + np.float32(1))
    for model in ("MTT_musicnn", "MSD_musicnn"):
        meta = meta_graph_pb2.MetaGraphDef()
        meta.ParseFromString(open(os.path.join(wheel, model, ".meta"), "rb").read())
        outs = ["model/Sigmoid", "model/batch_normalization_10/batchnorm/add_1"]
        sub = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, outs)   # drops the optimizer
        for node in sub.node:
            node.attr.pop("_output_shapes", None)
        tf.compat.v1.reset_default_graph()
        tf.compat.v1.import_graph_def(sub, name="")
        g = tf.compat.v1.get_default_graph()
        reader = tf.compat.v1.train.NewCheckpointReader(os.path.join(wheel, model) + "/")
        with tf.compat.v1.Session() as sess:
            for op in [o for o in g.get_operations() if o.type == "VariableV2"]:
                sess.run(g.create_op("Assign", [op.outputs[0], tf.constant(reader.get_tensor(op.name))],
                                     [tf.float32]).outputs[0])
            tag, pen = sess.run([o + ":0" for o in outs],
                                {"model/Placeholder:0": x_in, "model/Placeholder_2:0": False})
        print(model, "training graph vs wheel models.py: taggram",
              np.abs(tag - ref[f"tf_{model}_taggram"]).max(), "penultimate",
              np.abs(pen - ref[f"tf_{model}_penultimate"]).max())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    m = sub.add_parser("mel")
    m.add_argument("--wheel", required=True, help="the unpacked wheel's musicnn/ folder")
    m.add_argument("--music", required=True, help="folder of the Frozen-Bubble .ogg files")
    m.add_argument("--work", required=True)
    t = sub.add_parser("tf")
    t.add_argument("--work", required=True)
    t.add_argument("--out", required=True)
    c = sub.add_parser("meta")
    c.add_argument("--out", required=True, help="the .npz that stage tf wrote")
    a = ap.parse_args()
    {"mel": stage_mel, "tf": stage_tf, "meta": stage_meta}[a.stage](a)
    sys.exit(0)
