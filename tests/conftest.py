"""Suite-wide settings. The tests run small networks, where a second BLAS/OpenMP thread
costs more in hand-offs than it gains (measured on the 2-core CI machine under load: a
30-step preset=tiny edit took 14.5 s wall with one thread, 86.7 s with two). Scripts the
tests start as subprocesses inherit the same setting. Set before torch is imported."""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
