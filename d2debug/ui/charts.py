"""Charts: per-channel histograms of reference vs variant on shared bins (Altair, interactive)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from ..render import OVERLAY_COLOURS

__all__ = ["histograms", "stats_table", "legend"]

_PIPELINE_COLOURS = alt.Scale(domain=["reference", "variant"], range=["#1f77b4", "#d62728"])


def histograms(records: list[dict], title: str) -> None:
    """Overlaid per-channel histograms (one panel per channel), fraction of pixels per shared bin."""
    df = pd.DataFrame.from_records(records)
    enc = dict(
        x=alt.X("x:Q", title="value", scale=alt.Scale(zero=False)),
        y=alt.Y("fraction:Q", title="fraction of pixels", stack=None),
        color=alt.Color("pipeline:N", scale=_PIPELINE_COLOURS, legend=alt.Legend(orient="top", title=None)),
    )
    area = alt.Chart().mark_area(opacity=0.35, interpolate="step-after").encode(**enc)
    line = alt.Chart().mark_line(interpolate="step-after", strokeWidth=1.2).encode(
        **enc, tooltip=["pipeline", "channel", alt.Tooltip("x:Q", title="bin from", format=".3f"),
                        alt.Tooltip("fraction:Q", format=".4f")])
    chart = (alt.layer(area, line, data=df).properties(width=220, height=140)
             .facet(column=alt.Column("channel:N", title=None)).properties(title=title))
    st.altair_chart(chart, width="content")


def stats_table(pair, labels=("reference", "variant")) -> None:
    """Mean/std/min/max per channel of (reference, variant) :class:`~d2debug.stats.TensorStats`."""
    rows = []
    for who, s in zip(labels, pair):
        for name, c in zip(s.channel_names, s.channels):
            rows.append({"pipeline": who, "channel": name, "mean": c.mean, "std": c.std, "min": c.min, "max": c.max})
    st.dataframe(pd.DataFrame(rows).style.format(precision=3), hide_index=True, width="stretch")


def legend(counts: dict[str, int]) -> None:
    """The overlay's colour legend with counts."""
    names = {"matched": "matched", "missed": "missed (reference only)", "extra": "extra (variant only)",
             "class_flip": "class flipped"}
    parts = []
    for kind, rgb in OVERLAY_COLOURS.items():
        hexc = "#%02x%02x%02x" % tuple(int(round(v * 255)) for v in rgb)
        parts.append(f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{hexc};'
                     f'border-radius:2px;margin:0 0.3em 0 1em;vertical-align:middle"></span>'
                     f"{names[kind]}: <b>{counts.get(kind, 0)}</b>")
    st.markdown("".join(parts), unsafe_allow_html=True)
