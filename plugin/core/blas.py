"""Hold OpenBLAS to one thread while the detector runs.

The detector already keeps every core busy with its own window workers; if
OpenBLAS also splits each of its many small matrix products across threads,
the threads fight over the cores and counting runs two to three times
slower (measured on 2 cores). Environment variables cannot help inside
QGIS, where numpy is loaded long before the plugin, so the OpenBLAS the
process already holds is asked directly, and its setting restored after.
Best effort: with another BLAS (MKL, Accelerate) nothing changes.
"""
import contextlib
import ctypes
import glob
import os
import sys
import threading

_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads64_")
_GETTERS = ("openblas_get_num_threads", "openblas_get_num_threads64_",
            "scipy_openblas_get_num_threads64_")

_lock = threading.Lock()
_users = 0
_saved = []          # [(setter, threads before)]
_controls = None


def _loaded_blas_paths():
    paths = set()
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as fh:
                for line in fh:
                    path = line.split()[-1]
                    if path.startswith("/") and "blas" in os.path.basename(path).lower():
                        paths.add(path)
        except OSError:
            pass
    else:   # wheels bundle OpenBLAS next to numpy (Windows: numpy.libs, macOS: .dylibs)
        import numpy
        here = os.path.dirname(numpy.__file__)
        for pattern in ("../numpy.libs/*openblas*", ".libs/*openblas*", ".dylibs/*openblas*"):
            paths.update(glob.glob(os.path.join(here, pattern)))
    return sorted(paths)


def _find_controls():
    controls = []
    for path in _loaded_blas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in zip(_SETTERS, _GETTERS):
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is not None and getter is not None:
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                controls.append((setter, getter))
                break
    return controls


@contextlib.contextmanager
def single_threaded_blas():
    """OpenBLAS uses one thread inside the block (nested and concurrent
    blocks allowed; the first one in saves, the last one out restores)."""
    global _users, _controls, _saved
    with _lock:
        if _users == 0:
            try:
                if _controls is None:
                    _controls = _find_controls()
                _saved = [(setter, getter()) for setter, getter in _controls]
                for setter, _ in _saved:
                    setter(1)
            except Exception:       # never let a tuning step stop a count
                _saved = []
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for setter, threads in _saved:
                    try:
                        setter(threads)
                    except Exception:
                        pass
                _saved = []
