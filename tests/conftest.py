"""Suite-wide settings, set before torch is imported; scripts the tests start as
subprocesses inherit them.

Threads: the tests run small networks, where a second BLAS/OpenMP thread costs more in
hand-offs than it gains (measured on the 2-core CI machine under load: a 30-step
preset=tiny edit took 14.5 s wall with one thread, 86.7 s with two); parallelism comes from
running tests in several processes instead (``make test``: pytest-xdist).

Precision: ``auto`` (the default of ``manipulate.precision``, ``invert.precision`` and
``train.amp``) would mean bf16 on a CPU with AMX or AVX512-BF16 and fp32 elsewhere, so a
test's numbers would depend on the machine. The suite pins ``auto`` to fp32; tests about
precision ask for bf16 explicitly, and tests of ``auto`` itself unset the variable
(tests/utils/test_precision.py)."""

import atexit
import os
import shutil
import tempfile

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ["SOUND2IMG_AUTO_PRECISION"] = "fp32"  # sound2img.utils.precision.AUTO_ENV

# A weights/inversion cache of this process's own (each xdist worker, and the scripts it
# starts): no test reads what the machine has cached, or writes where another is writing.
_CACHE = tempfile.mkdtemp(prefix="sound2img-test-cache-")
os.environ["SOUND2IMG_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)
