"""How numbers read in findings, tables and reports: one formatter for values and lists, one for percentages."""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

__all__ = ["fmt", "pct"]


def fmt(value, nd: Optional[int] = None) -> str:
    """A value as people read it: ``[0.485, 0.456, 0.406]`` for a sequence (numpy arrays included), numbers
    with ``:g`` (``nd=None``) or rounded to ``nd`` decimals with trailing zeros and ``-0`` dropped, ``''`` for
    an empty string (so it is visible), anything else with ``str``."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(fmt(v, nd) for v in value) + "]"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, numbers.Integral) and nd is None:
            return str(int(value))
        if nd is None:
            return f"{float(value):g}"
        t = f"{float(value) + 0.0:.{nd}f}".rstrip("0").rstrip(".")
        return "0" if t in ("-0", "") else t
    if value == "":
        return "''"
    return str(value)


def pct(value: Optional[float], signed: bool = False) -> str:
    """A fraction 0..1 as percent with one decimal (``93.4``, ``-31.4`` with ``signed``); ``n/a`` for ``None``."""
    if value is None:
        return "n/a"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"
