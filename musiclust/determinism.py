"""Reproducible numerics in one place: the same seed gives the same bits whatever the machine's core count.

Why: a float sum depends on its order, and the order depends on how work is split between threads
(torch's intra-op reductions, the OpenMP chunks of scikit-learn's k-means, BLAS). Training amplifies a
last-bit difference into other weights, and other weights into other clusters: issue 13 found seed-0
NMI of the hybrid join 0.07 apart on two 2-core machines. So everything whose result is saved or
scored (training, embedding the collection, clustering, the map, the hybrid join's SVD, the scores)
runs inside :func:`reproducible`, as a ``with`` block or a decorator:

- torch's CPU generator is seeded when a seed is given (forked: the caller's random state is untouched);
- ``torch.use_deterministic_algorithms(True)``: an op without a deterministic kernel raises instead of
  varying silently (every op the models use has one on the CPU);
- torch's intra-op threads and every BLAS and OpenMP pool (through threadpoolctl) are pinned to
  ``threads`` (1 unless a caller asks otherwise), whatever ``OMP_NUM_THREADS`` or the core count says;
- one such section runs at a time per process, because the generator, the flag and the pools are
  process-wide state that a concurrent section would change under it.

k-means, the truncated SVD and UMAP take the seed as their own ``random_state``; UMAP given one runs
single-threaded (umap-learn sets numba to one thread).

Guaranteed, and tested in separate processes with different ``OMP_NUM_THREADS``
(``tests/test_determinism.py``): the same data, settings and seed give bit-identical weights,
embeddings, clusters, map and scores. Not guaranteed: the same bits on another CPU instruction set.
torch picks AVX2 or AVX-512 kernels at run time (MKL and oneDNN pick their own code paths), and they
round differently: on the AVX2 development machine, ``ATEN_CPU_CAPABILITY=default`` gave other trained
weights than the AVX2 kernels (same scores after 2 epochs). On an AVX-512 machine, forcing the AVX2 code
of torch, MKL, oneDNN and OpenBLAS gave other weights for every model and moved a seed's NMI by up to
0.07 (``scripts/experiments/kernels.py``, docs/results/kernels.json). Pinning that needs environment
variables set before torch runs its first op, which a library cannot do for its caller; a results file
records the ones that were set (:func:`musiclust.analysis.results.math_kernels`).
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

from musiclust.errors import ParameterError

# The pinned count. One thread is also the fastest on a busy 2-core machine: embedding the collection
# (one track, ~10 segments, per network call) took 29-35 s per model with two torch threads and ~1.5 s
# with one (benchmark, training figure); for training see TrainConfig.num_threads.
THREADS = 1
_SECTION = threading.RLock()  # re-entrant: a pinned function may call another (clustering inside embedding)
_POOLS = None  # (len(sys.modules) when made, ThreadpoolController): see _thread_pools


def _thread_pools():
    """threadpoolctl's view of the process's BLAS and OpenMP pools, kept while no module was imported.

    Making a ``ThreadpoolController`` walks every loaded shared library (~4 ms); a section is entered a
    few hundred times per training run. A new import may load a library with its own pool, so the view
    is made again whenever ``sys.modules`` has grown."""
    global _POOLS
    from threadpoolctl import ThreadpoolController

    if _POOLS is None or _POOLS[0] != len(sys.modules):
        controller = ThreadpoolController()
        _POOLS = (len(sys.modules), controller)
    return _POOLS[1]


def _set_deterministic(torch, mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its ~2.5 s import of the compiler stack.

    The public function imports ``torch._inductor`` to set the compiler's ``deterministic`` flag, then
    sets the flag every eager op reads. Nothing here compiles, so only the eager flag is set, unless the
    compiler is already loaded (someone compiles): then the public function sets both."""
    if "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


@contextmanager
def reproducible(seed: Optional[int] = None, threads: int = THREADS) -> Iterator[None]:
    """Run the block (or the decorated function) seeded, with deterministic kernels and pinned threads.

    ``seed`` seeds torch's CPU generator for the block (``None``: leave it alone, for work that draws
    no torch random numbers). Everything changed is restored on the way out, so the rest of the
    process keeps its own randomness and speed.

    torch is set up only when the block may use it: when a seed is given or torch is already imported.
    A seedless section in a process without torch (k-means, PCA, the map) then costs no torch import
    (~3 s); torch first imported inside such a block would run with its own thread count.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ParameterError(f"threads must be a positive integer, got {threads!r}")
    torch = None
    if seed is not None or "torch" in sys.modules:
        import torch  # here, and only then: importing the clustering helpers should not cost torch's import
    with _SECTION, _thread_pools().limit(limits=threads):
        if torch is None:
            yield
            return
        torch_threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.set_num_threads(threads)
                _set_deterministic(torch, True, False)
                if seed is not None:
                    torch.manual_seed(seed)
                yield
        finally:
            _set_deterministic(torch, deterministic, warn_only)
            torch.set_num_threads(torch_threads)
