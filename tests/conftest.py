"""Suite-wide settings. The tests run small networks, where a second BLAS/OpenMP thread
costs more in hand-offs than it gains (measured on the 2-core CI machine under load: a
30-step preset=tiny edit took 14.5 s wall with one thread, 86.7 s with two); parallelism
comes from running tests in several processes instead (``make test``: pytest-xdist).
Scripts the tests start as subprocesses inherit these settings. Set before torch is
imported."""

import atexit
import os
import shutil
import tempfile

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# A weights/inversion cache of this process's own (each xdist worker, and the scripts it
# starts): no test reads what the machine has cached, or writes where another is writing.
_CACHE = tempfile.mkdtemp(prefix="sound2img-test-cache-")
os.environ["SOUND2IMG_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)
