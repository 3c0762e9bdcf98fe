"""Per-channel summaries and histograms of ``3xHxW`` tensors, on bins shared by the tensors compared."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ChannelStats", "TensorStats", "tensor_stats", "shared_histograms", "histogram_records"]


@dataclass(frozen=True)
class ChannelStats:
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class TensorStats:
    """Summary of one ``CxHxW`` tensor: per-channel stats and histogram counts on ``edges`` (``bins+1``)."""

    channels: tuple[ChannelStats, ...]
    counts: tuple[np.ndarray, ...]
    edges: np.ndarray
    channel_names: tuple[str, ...]

    def to_dict(self, with_hist: bool = False) -> dict:
        out: dict[str, dict] = {
            name: {k: round(float(getattr(c, k)), 4) for k in ("mean", "std", "min", "max")}
            for name, c in zip(self.channel_names, self.channels)
        }
        if with_hist:
            out["histogram"] = {
                "edges": [round(float(e), 5) for e in self.edges],
                "counts": {n: c.astype(int).tolist() for n, c in zip(self.channel_names, self.counts)},
            }
        return out


def _as_array(t) -> np.ndarray:
    a = t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float32)
    if a.ndim != 3:
        raise ValueError(f"expected a CxHxW tensor, got shape {a.shape}")
    return a


def shared_histograms(tensors, channel_names=None, bins: int = 64) -> list[TensorStats]:
    """Stats of several ``CxHxW`` tensors with histograms on ONE set of bin edges spanning all of them, so
    the histograms overlay. ``channel_names`` default to ``c0, c1, ...``."""
    arrays = [_as_array(t) for t in tensors]
    all_finite = [bool(np.isfinite(a).all()) for a in arrays]
    finite = [a if ok else a[np.isfinite(a)] for a, ok in zip(arrays, all_finite)]  # copy only when needed
    lo = min((float(f.min()) for f in finite if f.size), default=0.0)
    hi = max((float(f.max()) for f in finite if f.size), default=1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    out = []
    for a, ok in zip(arrays, all_finite):
        names = tuple(channel_names or [f"c{i}" for i in range(a.shape[0])])
        chans, counts = [], []
        for c in range(a.shape[0]):
            x = a[c] if ok else a[c][np.isfinite(a[c])]
            chans.append(
                ChannelStats(float(x.mean()), float(x.std()), float(x.min()), float(x.max()))
                if x.size
                else ChannelStats(float("nan"), float("nan"), float("nan"), float("nan"))
            )
            # bins + range (not the edges array) takes numpy's equal-width path: the same counts on the same
            # edges (numpy corrects each index against linspace(lo, hi)), without sorting the data.
            counts.append(np.histogram(x, bins=bins, range=(lo, hi))[0])
        out.append(TensorStats(tuple(chans), tuple(counts), edges, names))
    return out


def tensor_stats(a, b=None, channel_names=None, bins: int = 64):
    """Stats of ``a`` (and ``b`` on the same bins when given). Returns one :class:`TensorStats` or a pair."""
    if b is None:
        return shared_histograms([a], channel_names, bins)[0]
    sa, sb = shared_histograms([a, b], channel_names, bins)
    return sa, sb


def histogram_records(stats, labels) -> list[dict]:
    """Tidy rows ``{pipeline, channel, x, x2, count, fraction}`` of :class:`TensorStats` on shared bins (one
    per pipeline, named by ``labels``), for overlaid histogram charts: ``x``..``x2`` is a bin, ``fraction`` its
    share of that channel's pixels."""
    rows = []
    for who, st in zip(labels, stats):
        e = st.edges
        for ch, counts in zip(st.channel_names, st.counts):
            total = max(1, int(counts.sum()))
            rows += [{"pipeline": who, "channel": ch, "x": float(e[k]), "x2": float(e[k + 1]), "count": int(c),
                      "fraction": float(c) / total} for k, c in enumerate(counts)]
    return rows
