"""PNG charts for the admin, drawn on the server with matplotlib's Agg canvas.

No outside resource (no CDN script, no web font): the admin stays usable offline. Figures are
built with ``matplotlib.figure.Figure`` directly, not ``pyplot``, so concurrent requests do not
share global state.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

WIDTH, HEIGHT, DPI = 9.0, 3.6, 100


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _empty(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="#666")
    axes.set_xticks([])
    axes.set_yticks([])


def lines(series: Mapping[str, tuple[Sequence, Sequence]], title: str, ylabel: str, *,
          empty_message: str = "No data yet", markers: bool = True, dates: bool = False) -> bytes:
    """One line per ``{label: (x values, y values)}``; None values leave gaps."""
    figure, axes = _figure()
    axes.set_title(title, loc="left", fontsize=11)
    drawn = False
    for label, (x, y) in series.items():
        y = np.array([np.nan if value is None else value for value in y], dtype=float)
        if len(y) == 0 or np.isnan(y).all():
            continue
        axes.plot(list(x), y, marker="o" if markers else None, markersize=4, label=label)
        drawn = True
    if not drawn:
        _empty(axes, empty_message)
    else:
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if dates:
            figure.autofmt_xdate()
    return _png(figure)


def intervals(labels: Sequence[str], values: Sequence[float], lows: Sequence[float], highs: Sequence[float],
              title: str, xlabel: str, *, empty_message: str = "No data yet") -> bytes:
    """Horizontal bars with error bars (e.g. click-through with its 95% interval), top to bottom."""
    figure, axes = _figure()
    axes.set_title(title, loc="left", fontsize=11)
    if not len(labels):
        _empty(axes, empty_message)
        return _png(figure)
    figure.set_figheight(max(HEIGHT, 0.9 + 0.32 * len(labels)))
    positions = np.arange(len(labels))[::-1]
    values, lows, highs = (np.asarray(array, dtype=float) for array in (values, lows, highs))
    axes.barh(positions, values, color="#79aec8", height=0.6)
    axes.errorbar(values, positions, xerr=[values - lows, highs - values], fmt="none", ecolor="#333", capsize=3)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xlabel(xlabel)
    axes.set_xlim(0, max(0.01, float(highs.max()) * 1.1))
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str, *,
                 empty_message: str = "No data yet") -> bytes:
    """Bars of each series side by side per group (e.g. metrics per strategy and reveal)."""
    figure, axes = _figure()
    axes.set_title(title, loc="left", fontsize=11)
    if not len(groups) or not series:
        _empty(axes, empty_message)
        return _png(figure)
    width = 0.8 / len(series)
    positions = np.arange(len(groups))
    for index, (label, values) in enumerate(series.items()):
        values = np.array([np.nan if value is None else value for value in values], dtype=float)
        axes.bar(positions + (index - (len(series) - 1) / 2) * width, values, width, label=label)
    axes.set_xticks(positions, groups, fontsize=8)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)
