"""Least-squares fits of the user's tensor against a rendered reference: per channel, the best affine map
``user[c] ~ slope * reference[perm[c]] + offset`` over every channel permutation.

Residuals are RMS errors in grey levels (0..255 units of the reference image) after undoing the best map: a
residual near 0 means the rendering reproduces the user's pixels, whatever value range they are in.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

__all__ = ["EXACT", "UNEXPLAINED", "Fit", "affine_matrix", "best_permutation", "fit", "as_channels"]

EXACT = 0.05  # grey levels: below this the explanation reproduces the tensor up to float rounding
UNEXPLAINED = 2.0  # grey levels: above this something the Doctor does not model remains

# Another permutation replaces the identity only when clearly better (grey images fit every permutation):
PERM_MIN_GAIN = 0.5  # grey levels better than the identity's residual, and
PERM_MAX_RATIO = 0.7  # at most this fraction of it

_PERMS = list(itertools.permutations(range(3)))


class Fit(NamedTuple):
    """The best explanation of the user tensor by one rendering. ``perm[c]``: the reference channel behind user
    channel ``c``; ``slope``/``offset``: per user channel (3,); ``identity``: the residual with channels as
    they stand (to say how much the permutation gained)."""

    residual: float
    perm: tuple[int, ...]
    slope: np.ndarray
    offset: np.ndarray
    identity: float


def as_channels(img: np.ndarray) -> np.ndarray:
    """An ``HxWx3`` image as ``3xN`` float64 (the layout the fits work on)."""
    return np.ascontiguousarray(img.transpose(2, 0, 1).reshape(3, -1), dtype=np.float64)


def affine_matrix(U: np.ndarray, R: np.ndarray):
    """Least-squares ``U[c] ~ a * R[j] + b`` for every pair. ``U``, ``R``: ``3xN`` float64.

    Returns ``(resid, a, b)``, each ``3x3`` indexed ``[c, j]``; ``resid`` is the RMS error in R's units
    (grey levels), i.e. what is left of the user channel after undoing the best affine map.
    """
    mu_u, mu_r = U.mean(1), R.mean(1)
    Uc, Rc = U - mu_u[:, None], R - mu_r[:, None]
    n = U.shape[1]
    var_u = (Uc * Uc).sum(1) / n
    var_r = (Rc * Rc).sum(1) / n
    cov = Uc @ Rc.T / n
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(var_r[None, :] > 1e-12, cov / var_r[None, :], 0.0)
        res_var = np.clip(var_u[:, None] - np.where(var_r[None, :] > 1e-12, cov ** 2 / var_r[None, :], 0.0), 0, None)
        resid = np.where(np.abs(a) > 1e-12, np.sqrt(res_var) / np.abs(a), np.inf)
    # A constant user channel against a constant reference channel is explained exactly (by the offset).
    both_flat = (var_u[:, None] <= 1e-12) & (var_r[None, :] <= 1e-12)
    resid = np.where(both_flat, 0.0, resid)
    a = np.where(both_flat, 1.0, a)
    b = mu_u[:, None] - a * mu_r[None, :]
    return resid, a, b


def best_permutation(resid: np.ndarray) -> tuple[tuple[int, ...], float, float]:
    """The channel permutation (user channel c <- reference channel perm[c]) with the smallest RMS residual.

    Identity is kept unless another permutation is clearly better (:data:`PERM_MIN_GAIN`,
    :data:`PERM_MAX_RATIO`). Returns ``(perm, its residual, identity's residual)``.
    """
    def score(p):
        v = [resid[c, p[c]] for c in range(3)]
        return math.sqrt(sum(x * x for x in v) / 3) if all(np.isfinite(v)) else math.inf

    ident = score((0, 1, 2))
    best = min(_PERMS, key=score)
    if score(best) < ident and (ident - score(best) > PERM_MIN_GAIN) and score(best) < PERM_MAX_RATIO * ident:
        return best, score(best), ident
    return (0, 1, 2), ident, ident


def fit(U: np.ndarray, img: np.ndarray) -> Fit:
    """Fit the user tensor ``U`` (``3xN`` float64) against a rendered ``HxWx3`` image of the same size."""
    resid, a, b = affine_matrix(U, as_channels(img))
    perm, r, ident = best_permutation(resid)
    return Fit(r, perm, np.array([a[c, perm[c]] for c in range(3)]), np.array([b[c, perm[c]] for c in range(3)]),
               ident)
