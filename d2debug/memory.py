"""The process's memory: giving the C heap back to the system after each image, and reading resident memory.

Decoding, resizing and a forward pass allocate and free tens of megabytes per image. glibc keeps freed chunks
in its arenas, and with many threads and mixed sizes the arenas fragment: resident memory climbs by a few MB
per image although nothing is retained (the audit went from 765 to 1,456 MB over 102 images).
``malloc_trim(0)`` returns the free pages at the cost of one walk over the heap, and of faulting fresh pages
in for the next image; forcing it on every ``free`` (``MALLOC_TRIM_THRESHOLD_=0``) keeps memory flat too but
slows every allocation. :func:`trim_if_grown` trims only once resident memory has grown by a margin since the
last trim, which bounds the growth at that margin for a few trims per hundred images.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path
from typing import Any, Optional

from .errors import D2DebugError

__all__ = ["release_heap", "trim_if_grown", "TRIM_MARGIN_MB", "rss_mb", "peak_rss_mb", "deep_nbytes"]

_TRIM: Any = None  # the C function, once looked up; False where there is none (not glibc)
TRIM_MARGIN_MB = 192.0  # growth tolerated between trims: a few images' worth of fragments
_FLOOR: dict[str, float] = {}  # resident MB right after the last trim (this process)
_FLOOR_LOCK = threading.Lock()  # the dashboard runs sessions in threads


def _malloc_trim():
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        name = ctypes.util.find_library("c")
        try:
            fn = ctypes.CDLL(name).malloc_trim if name else None
        except (OSError, AttributeError):
            fn = None
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            _TRIM = fn
    return _TRIM


def release_heap() -> bool:
    """Return the free pages of every malloc arena to the system (glibc ``malloc_trim(0)``). ``True`` when
    something was released; ``False`` too where the C library has no such call (macOS, musl)."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn else False


def trim_if_grown(margin_mb: float = TRIM_MARGIN_MB) -> bool:
    """Call after each image: :func:`release_heap` when resident memory has grown by more than ``margin_mb``
    since the last trim (or the first call). One read of ``/proc/self/statm`` otherwise. ``True`` when it
    trimmed."""
    try:
        with open("/proc/self/statm", "rb") as f:
            now = int(f.read().split()[1]) * _PAGE_MB
    except OSError:
        return release_heap()  # no /proc: trim every time
    with _FLOOR_LOCK:
        floor = _FLOOR.setdefault("mb", now)
        if now - floor <= margin_mb:
            return False
        trimmed = release_heap()
        with open("/proc/self/statm", "rb") as f:
            _FLOOR["mb"] = int(f.read().split()[1]) * _PAGE_MB
        return trimmed


_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def _status_mb(field: str, pid: Optional[int]) -> float:
    path = Path(f"/proc/{pid or os.getpid()}/status")
    try:
        text = path.read_text()
    except OSError as exc:
        raise D2DebugError(f"cannot read {path} ({exc.strerror}); resident memory is read from Linux's /proc") from None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise D2DebugError(f"{path} has no {field} line")


def rss_mb(pid: Optional[int] = None) -> float:
    """Resident memory (``VmRSS``) of process ``pid`` (default: this one) in MB."""
    return _status_mb("VmRSS", pid)


def peak_rss_mb(pid: Optional[int] = None) -> float:
    """Peak resident memory (``VmHWM``) of process ``pid`` (default: this one) in MB."""
    return _status_mb("VmHWM", pid)


def deep_nbytes(obj: Any) -> int:
    """Bytes of the array data ``obj`` holds: numpy arrays, torch tensors (their storage, counted once however
    many views share it), ``bytes``, found through dataclass fields, ``__dict__``, dicts, lists and tuples.
    Python objects' own overhead is not counted: what fills memory here is pixels. Used to bound the
    dashboard's caches by bytes."""
    import numpy as np
    import torch

    seen: set[int] = set()
    storages: set[tuple[str, int]] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or o is None or isinstance(o, (str, int, float, bool, type, torch.nn.Module)):
            continue
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            key = (str(o.device), st.data_ptr())
            if key not in storages:
                storages.add(key)
                total += st.nbytes()
        elif isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base is o or id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes
        elif isinstance(o, (bytes, bytearray, memoryview)):
            total += len(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif hasattr(o, "__dict__") and not callable(o):
            stack.extend(vars(o).values())
    return total
