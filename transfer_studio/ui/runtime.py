"""The desktop app's runtime for imports and memory: one import gate and one garbage-collector policy.

Qt-free (the page models use it too). The task runner (``ui.worker``) and the training worker
(``ui.train_worker``) start their threads; this module decides how those threads import heavy
modules and when the collector runs.

**One import gate.** Two threads importing a package whose modules import each other can see one of
them half-initialised ("partially initialized module 'torch.utils'"), so every import a background
thread makes of torch, the core or the engine goes through ``import_module``: one re-entrant lock.
A module that is already fully imported is returned without taking it (``sys.modules``), so a GUI
thread may ask for a module a worker has loaded without waiting.

**torch only where it is needed.** ``ensure_ml`` imports torch, torchvision and its model zoo; the
task runner calls it before a task that needs torch (the default). Tasks that do not (thumbnail and
preview decodes, the graph's layout, loading pyqtgraph) say ``needs_torch=False`` and start at once
instead of waiting behind torch's first import. ``start_preload`` loads libtorch's shared libraries
at start-up without the GIL (libc's dlopen through ctypes), before the window exists.

**One garbage-collector policy.** Importing torch allocates several hundred thousand long-lived
objects. A full (generation 2) collection walks all of them while holding the GIL: 0.3-1.2 s during
which the GUI thread cannot run. So (1) the collector is paused while the gate imports something,
(2) after an import that loaded many modules or left many new objects, everything alive is moved to
the permanent generation (``gc.freeze``) before the collector is enabled again (else its first young
collection walks them all), and (3) ``settle_heap`` does the same once torch is loaded and once the
first model is shown (torchvision, fx). Only in the app's process (``tune_interpreter``): a test
process or a library user keeps its collector as it is, apart from the pause during an import.
Only modules are frozen on purpose: a frozen network in a reference cycle would never be collected.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

ML_MODULES = ("torch", "torchvision", "torchvision.models")
# What a training run's setup imports (torchvision alone pulls in torch._dynamo, sympy, ... about a
# thousand modules). The Train page imports them in the background when it opens.
TRAINING_MODULES = ("transfer_studio.training.fit", "transfer_studio.training.loop",
                    "transfer_studio.core.network", "transfer_studio.core.augment",
                    "transfer_studio.core.strategy")
HEAVY_IMPORT = 200  # modules one import must load before the heap is frozen after it
YOUNG_AFTER_IMPORT = 20_000  # or new objects it left (a young collection of 20,000 takes ~5 ms)

_gate = threading.RLock()
_preloaded = False
_tuned = False


# -- the import gate ---------------------------------------------------------------------------
def loaded(name: str) -> ModuleType | None:
    """``name`` if it is fully imported already (no lock, no import), else None."""
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


def import_module(name: str) -> ModuleType:
    """Import ``name`` through the gate (see the module docstring). Call from worker threads, or from
    the GUI thread only for a module a worker has loaded (then it is a dictionary lookup)."""
    module = loaded(name)
    if module is not None:
        return module
    with _gate:
        before = len(sys.modules)
        with collector_paused():
            module = importlib.import_module(name)
            # Frozen before the collector is enabled again: the first young collection after the pause
            # traversed every object the import made (267,000 for torchvision: a 90 ms GUI stall).
            young = _tuned and gc.get_count()[0] > YOUNG_AFTER_IMPORT  # the app's process only (settle_heap)
            if len(sys.modules) - before >= HEAVY_IMPORT or young:
                gc.freeze()  # see "One garbage-collector policy"
        return module


def import_core(name: str) -> ModuleType:
    """``transfer_studio.core.<name>`` through the gate."""
    return import_module(f"transfer_studio.core.{name}")


def ensure_ml() -> None:
    """torch, torchvision and the model zoo, imported once through the gate (worker threads only:
    the first import takes seconds). libtorch's libraries are preloaded first, without the GIL."""
    if all(loaded(name) is not None for name in ML_MODULES):
        return
    with _gate:
        if "torch" not in sys.modules:
            preload_torch_libraries()
        for name in ML_MODULES:
            import_module(name)
        gc.freeze()


def preload_torch_libraries() -> None:
    """Load libtorch's shared libraries before ``import torch``, without holding the GIL.

    ``import torch`` dlopens libtorch (hundreds of MB of relocations and static initialisers) from
    inside an extension-module import, which holds the GIL throughout: the GUI thread froze for
    0.35-0.47 s on this 2-core machine. ctypes releases the GIL around calls into foreign functions,
    so calling libc's ``dlopen`` directly loads the same libraries without the GIL; the import then
    finds them loaded. The load still blocks the GUI thread natively when that thread is busy at the
    same time (measured: ~0.5 s at a first model load), hence ``start_preload`` before the window
    exists. Only Python-independent libraries are preloaded (not libtorch_python). Linux only;
    anything unexpected leaves the normal import to do the work.
    """
    global _preloaded
    if _preloaded or not sys.platform.startswith("linux"):
        return
    _preloaded = True
    try:
        import ctypes
        import importlib.util

        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return
        lib_dir = os.path.join(os.path.dirname(spec.origin), "lib")
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        for name in ("libtorch_global_deps.so", "libtorch.so"):
            path = os.path.join(lib_dir, name)
            if os.path.exists(path):
                dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_GLOBAL)  # handle kept: never unloaded
    except Exception:  # noqa: BLE001 - an optimisation only
        pass


def start_preload() -> None:
    """Preload libtorch on a background thread now (app start-up), ahead of the first task."""
    if _preloaded or "torch" in sys.modules:
        return

    def run() -> None:
        with _gate:
            preload_torch_libraries()

    threading.Thread(target=run, name="ts-preload", daemon=True).start()


# -- the garbage-collector policy --------------------------------------------------------------
@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside (an import's new objects would trigger full ones)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def tune_interpreter() -> None:
    """Interpreter settings for a responsive GUI (the app's process only, not library users).

    Worker threads (model building, scans, training) run Python too, and every call from Qt into
    Python on the GUI thread (a paint, a slot) waits for the GIL up to the switch interval: 1 ms
    instead of the default 5 ms keeps those waits well below a frame. It also enables
    ``settle_heap``.
    """
    global _tuned
    _tuned = True
    sys.setswitchinterval(0.001)


def settle_heap() -> None:
    """Move every object alive now out of the collector's sight (``gc.freeze``).

    Called once torch is loaded and again after the first model is shown (torchvision, fx): their
    several hundred thousand long-lived objects would otherwise make each full collection take
    half a second, and a collection stops every thread, the GUI's included. Cheap to call. No
    ``gc.collect()`` first: that full collection would be the very stall this avoids (cyclic
    garbage alive right now stays: a little memory, once per call site).
    """
    if _tuned:  # a test process or a library user: leave their collector alone
        gc.freeze()
