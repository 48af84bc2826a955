"""PNG charts for the admin, drawn on the server with matplotlib's Agg canvas.

No outside resource (no CDN script, no web font): the admin stays usable offline. Figures are
built with ``matplotlib.figure.Figure`` directly, not ``pyplot``, so concurrent requests do not
share global state.

Every chart draws for any data it is given. Labels come from the shop's data (strategy keys,
placements, arms) and are drawn as plain text: never parsed as mathtext or LaTeX, where a
``$`` in a label raised an error. Bars and error bars are clipped to what can be drawn (an
interval bound a rounding error past its value, NaN, infinity). Charts draw at most
``MAX_SERIES`` series or ``MAX_BARS`` bars; callers fold the rest into "other" where values add
up (counts), and the chart says how many it left out where they do not (metrics).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

WIDTH, HEIGHT, DPI = 9.0, 3.6, 100
# Colours that stay apart for the few series a chart draws (matplotlib's "tab10" without grey):
# a chart never draws more series than it has colours.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
MAX_SERIES = len(COLOURS)
MAX_BARS = 12
MAX_LABEL_LENGTH = 40
LINE_STYLES = ("-", "--", ":", "-.")


@contextlib.contextmanager
def _plain_text():
    """A host's matplotlibrc may turn on LaTeX for all text; these charts never use it."""
    import matplotlib

    with matplotlib.rc_context({"text.usetex": False, "axes.formatter.use_mathtext": False}):
        yield


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _png(figure) -> bytes:
    from matplotlib.text import Text

    for text in figure.findobj(Text):
        text.set_parse_math(False)  # "$\notacommand{$" is a label, not a formula
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # A character the font lacks is drawn as a box; that is no reason to flood the log.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def label(text) -> str:
    """A label as drawn: a string, at most ``MAX_LABEL_LENGTH`` characters, one line."""
    text = " ".join(str(text).split())
    text = text if len(text) <= MAX_LABEL_LENGTH else text[: MAX_LABEL_LENGTH - 1] + "…"
    # matplotlib hides legend entries whose label starts with "_"; a space keeps them listed.
    return " " + text if text.startswith("_") else text


def _empty(figure, axes, message: str) -> bytes:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="#666", wrap=True)
    axes.set_xticks([])
    axes.set_yticks([])
    return _png(figure)


def _finite(values) -> np.ndarray:
    """Values as floats, anything that cannot be drawn (None, NaN, infinities) as NaN: a gap."""
    array = np.array([np.nan if value is None else value for value in values], dtype=float)
    return np.where(np.isfinite(array), array, np.nan)


def lines(series: Mapping[str, tuple[Sequence, Sequence]], title: str, ylabel: str, *,
          empty_message: str = "No data yet", markers: bool = True, dates: bool = False) -> bytes:
    """One line per ``{label: (x values, y values)}``; None values leave gaps.

    At most ``MAX_SERIES`` lines (the first ones given); the legend says how many more there were.
    """
    with _plain_text():
        figure, axes = _figure()
        axes.set_title(label(title) if len(title) > 90 else title, loc="left", fontsize=11)
        drawable = [(name, x, _finite(y)) for name, (x, y) in series.items() if len(y) and not np.isnan(_finite(y)).all()]
        if not drawable:
            return _empty(figure, axes, empty_message)
        for number, (name, x, y) in enumerate(drawable[:MAX_SERIES]):
            axes.plot(list(x), y, marker="o" if markers else None, markersize=4, label=label(name),
                      color=COLOURS[number % len(COLOURS)])
        _legend(axes, len(drawable) - MAX_SERIES)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        if dates:
            figure.autofmt_xdate()
        return _png(figure)


def _legend(axes, left_out: int, **options) -> None:
    if not axes.get_legend_handles_labels()[0]:
        return
    legend = axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), **options)
    if left_out > 0:
        legend.set_title(f"({left_out} more not shown)", prop={"size": 8})


def metric_history(history: Mapping[str, Mapping[str, Sequence[float | None]]], title: str, ylabel: str, *,
                   empty_message: str = "No evaluated version yet") -> bytes:
    """A metric across each strategy's versions: ``{strategy: {series: values, oldest first}}``.

    One colour per strategy (at most ``MAX_SERIES``), one line style per series (e.g. the
    number of revealed events); the x axis counts versions back from each strategy's newest,
    so strategies trained minutes or months apart line up by version, not by training time.
    While every strategy has a single version there is no history yet: grouped bars instead.
    """
    strategies = [(name, {key: _finite(values) for key, values in per_series.items()})
                  for name, per_series in history.items()]
    strategies = [(name, per_series) for name, per_series in strategies
                  if any(len(values) and not np.isnan(values).all() for values in per_series.values())]
    series_names = list(dict.fromkeys(key for _, per_series in strategies for key in per_series))
    if strategies and all(len(values) <= 1 for _, per_series in strategies for values in per_series.values()):
        newest = {key: [per_series[key][-1] if len(per_series.get(key, ())) else None for _, per_series in strategies]
                  for key in series_names}
        return grouped_bars([name for name, _ in strategies], newest, f"{title} (one version each so far)", ylabel)
    with _plain_text():
        figure, axes = _figure()
        axes.set_title(title, loc="left", fontsize=11)
        if not strategies:
            return _empty(figure, axes, empty_message)
        longest = 1
        for number, (name, per_series) in enumerate(strategies[:MAX_SERIES]):
            colour = COLOURS[number % len(COLOURS)]
            for style_number, key in enumerate(series_names):
                values = per_series.get(key, np.array([]))
                if not len(values):
                    continue
                longest = max(longest, len(values))
                positions = np.arange(len(values)) - (len(values) - 1)
                axes.plot(positions, values, color=colour, linestyle=LINE_STYLES[style_number % len(LINE_STYLES)],
                          marker="o", markersize=3, label=label(name) if style_number == 0 else None)
        for style_number, key in enumerate(series_names):
            axes.plot([], [], color="#555", linestyle=LINE_STYLES[style_number % len(LINE_STYLES)], label=label(key))
        _legend(axes, len(strategies) - MAX_SERIES)
        ticks = np.arange(-(longest - 1), 1)
        axes.set_xticks(ticks, [("newest" if tick == 0 else str(tick)) for tick in ticks], fontsize=8)
        axes.set_xlabel("versions back from each strategy's newest")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        return _png(figure)


def intervals(labels: Sequence[str], values: Sequence[float], lows: Sequence[float], highs: Sequence[float],
              title: str, xlabel: str, *, empty_message: str = "No data yet") -> bytes:
    """Horizontal bars with error bars (e.g. click-through with its 95% interval), top to bottom.

    At most ``MAX_BARS`` bars (the first ones given: fold the rest into "other" first).
    """
    with _plain_text():
        figure, axes = _figure()
        axes.set_title(title, loc="left", fontsize=11)
        if not len(labels):
            return _empty(figure, axes, empty_message)
        count = min(len(labels), MAX_BARS)
        values, lows, highs = (np.nan_to_num(_finite(array)[:count], nan=0.0, posinf=0.0, neginf=0.0)
                               for array in (values, lows, highs))
        # An interval bound a rounding error past its value (0 clicks: low 2e-19 > rate 0) is no error bar.
        below, above = np.clip(values - lows, 0.0, None), np.clip(highs - values, 0.0, None)
        figure.set_figheight(max(HEIGHT, 0.9 + 0.32 * count))
        positions = np.arange(count)[::-1]
        axes.barh(positions, values, color="#79aec8", height=0.6)
        axes.errorbar(values, positions, xerr=np.vstack([below, above]), fmt="none", ecolor="#333", capsize=3)
        axes.set_yticks(positions, [label(text) for text in labels[:count]], fontsize=8)
        axes.set_xlabel(xlabel)
        axes.set_xlim(0, max(0.01, float(np.max(values + above)) * 1.1))
        axes.grid(axis="x", alpha=0.3)
        return _png(figure)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str, *,
                 empty_message: str = "No data yet") -> bytes:
    """Bars of each series side by side per group (e.g. metrics per strategy and reveal).

    At most ``MAX_BARS`` groups and ``MAX_SERIES`` series (the first ones given).
    """
    with _plain_text():
        figure, axes = _figure()
        axes.set_title(title, loc="left", fontsize=11)
        groups = list(groups)[:MAX_BARS]
        shown = list(series.items())[:MAX_SERIES]
        if not groups or not shown:
            return _empty(figure, axes, empty_message)
        width = 0.8 / len(shown)
        positions = np.arange(len(groups))
        for index, (name, values) in enumerate(shown):
            values = _finite(list(values)[: len(groups)])
            axes.bar(positions[: len(values)] + (index - (len(shown) - 1) / 2) * width, values, width,
                     label=label(name), color=COLOURS[index % len(COLOURS)])
        names = [label(group) for group in groups]
        # Side by side, more than a few names run into each other: slant them.
        slanted = len(names) > 4 or sum(map(len, names)) > 60
        axes.set_xticks(positions, names, fontsize=8, rotation=30 if slanted else 0, ha="right" if slanted else "center")
        axes.set_ylabel(ylabel)
        axes.grid(axis="y", alpha=0.3)
        _legend(axes, len(series) - MAX_SERIES)
        return _png(figure)
