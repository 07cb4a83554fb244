"""PyTorch's threads and the threads of the BLAS under it, set together.

torch.set_num_threads sets PyTorch's own (OpenMP) threads only. Debian's python3-torch does its
matrix products (linear layers, matmul) in the system's OpenBLAS, whose pthreads build starts one
thread per core and is not told: a "1-thread" PyTorch run then multiplies on every core, and two
such runs side by side fight over the cores (measured here: 2 baselines at "1 thread" each ran
1.5x and 4x slower than alone). set_threads also sets OpenBLAS's count, through its
openblas_set_num_threads, in every OpenBLAS library loaded in this process.
"""
import ctypes

import torch


def loaded_openblas():
    """Paths of the OpenBLAS libraries mapped into this process."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/" in line}
    return sorted(p for p in paths if "openblas" in p.lower() and ".so" in p.rsplit("/", 1)[-1])


def set_threads(n):
    """torch.set_num_threads(n), and n threads for each loaded OpenBLAS; returns those paths."""
    torch.set_num_threads(n)
    libs = loaded_openblas()
    for path in libs:
        ctypes.CDLL(path).openblas_set_num_threads(n)
    return libs
