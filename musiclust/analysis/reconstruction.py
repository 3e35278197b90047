"""Reconstruction error in dB², the one yardstick for the VAEs and for PCA of the same segments.

Every reconstruction here is of whole model segments, de-standardised back to dB: ``(n_mels, S * frames)``.
The models' error (:func:`musiclust.pipeline.reconstruction_error`) and PCA's
(:func:`musiclust.analysis.baselines.pca_reconstruction_mse_db`) both go through
the one function :func:`reconstruction_mse_db`, so "the VAE beats PCA" compares like with like.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from musiclust.errors import ParameterError


def reconstruction_mse_db(original_db: np.ndarray, reconstructed_db: np.ndarray) -> float:
    """Mean squared error (dB²) of one track's reconstruction against its log-mel.

    ``original_db`` is ``(n_mels, T)``, ``reconstructed_db`` ``(n_mels, T')`` covering whole segments. When
    ``T' <= T`` the trailing partial window the models never see is left out; when ``T' > T`` the track was
    shorter than one segment and was tiled to fill it (:func:`musiclust.features.mel.segments`), so the
    original is tiled the same way: the error is always against what the model was given.
    """
    original, recon = np.asarray(original_db, dtype=np.float64), np.asarray(reconstructed_db, dtype=np.float64)
    if original.ndim != 2 or recon.ndim != 2 or original.shape[0] != recon.shape[0] or 0 in original.shape + recon.shape:
        raise ParameterError(
            f"a reconstruction must be a non-empty (n_mels, T') beside its (n_mels, T) log-mel; got "
            f"{recon.shape} and {original.shape}"
        )
    frames = recon.shape[1]
    if frames > original.shape[1]:
        original = np.tile(original, (1, -(-frames // original.shape[1])))
    return float(np.mean((recon - original[:, :frames]) ** 2))


def mean_reconstruction_mse_db(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean over tracks of :func:`reconstruction_mse_db`: each track weighs the same however long it is.

    ``pairs`` yields ``(original_db, reconstructed_db)`` per track; a generator keeps one track in memory
    at a time (a large library's held-out tracks do not fit at once). NaN when it yields nothing.
    """
    errors = [reconstruction_mse_db(original, recon) for original, recon in pairs]
    return float(np.mean(errors)) if errors else float("nan")
