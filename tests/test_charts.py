"""recommender.charts: every chart draws a PNG for any data (the dashboard's 500s, replayed)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from recommender import charts, reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = st.text(min_size=0, max_size=60) | st.sampled_from(["$\\notacommand{$", "$x^2$", "\\", "$", "_^{}", "%d"])
NUMBERS = st.none() | st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(0, 1)
FEW = settings(max_examples=15, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))


def is_png(data):
    return isinstance(data, bytes) and data.startswith(PNG_MAGIC)


def test_zero_clicks_draws_although_the_interval_starts_a_hair_above_the_rate():
    """With 0 clicks the Wilson lower bound came out ~2e-19 above 0: matplotlib refused the negative error bar."""
    low, high = reports.wilson_interval([0, 0], [1000, 37])
    assert low[0] > 0.0  # the rounding the chart must survive
    assert is_png(charts.intervals(["hybrid", "popularity"], [0.0, 0.0], low, high, "t", "x"))


@pytest.mark.parametrize("text", ["$\\notacommand{$", "$x$", "50% off $ 3 $", "\\frac{1}{2}"])
def test_labels_are_never_parsed_as_math(text):
    """A label such as "$\\notacommand{$" crashed mathtext; every chart draws it as plain text."""
    assert is_png(charts.intervals([text], [0.1], [0.05], [0.2], text, text))
    assert is_png(charts.lines({text: ([1, 2], [0.1, 0.2])}, text, text))
    assert is_png(charts.grouped_bars([text], {text: [0.3]}, text, text))
    assert is_png(charts.metric_history({text: {text: [0.1, 0.2]}}, text, text))


def test_thousands_of_groups_become_the_top_ones_and_other():
    """5,000 distinct labels (minutes to draw before) fold into at most TOP_GROUPS + 1 bars."""
    rows = reports._rows([(f"strategy-{n}", "home", "") for n in range(5000)],
                         np.arange(5000, 0, -1) + 29, np.arange(5000) % 7, ("strategy", "placement", "arm"))
    folded = reports.top_with_other(rows)
    assert len(folded) == reports.TOP_GROUPS + 1
    assert folded[-1].label == f"other ({5000 - reports.TOP_GROUPS} groups)"
    assert folded[-1].impressions == sum(row.impressions for row in rows[reports.TOP_GROUPS:])
    assert 0.0 <= folded[-1].low <= folded[-1].ctr <= folded[-1].high <= 1.0
    assert is_png(charts.intervals([row.label for row in folded], [row.ctr for row in folded],
                                   [row.low for row in folded], [row.high for row in folded], "t", "x"))


def test_below_the_minimum_nothing_is_charted_on_its_own():
    """Groups with fewer than MIN_IMPRESSIONS impressions are only part of "other"."""
    rows = reports._rows([("a", "", ""), ("b", "", "")], [reports.MIN_IMPRESSIONS - 1, 3], [1, 0],
                         ("strategy", "placement", "arm"))
    assert [row.label for row in reports.top_with_other(rows)] == ["other (2 groups)"]
    assert reports.top_with_other([]) == []


def test_charts_draw_at_most_their_maximum_of_series():
    """Twenty series draw the first MAX_SERIES lines, and the legend says how many were left out."""
    from matplotlib.figure import Figure

    drawn = {}
    original = Figure.savefig

    def spy(figure, *args, **kwargs):
        axes = figure.axes[0]
        drawn["lines"] = len([line for line in axes.get_lines() if line.get_xydata().size])
        drawn["legend"] = axes.get_legend().get_title().get_text()
        return original(figure, *args, **kwargs)

    Figure.savefig = spy
    try:
        charts.lines({f"series {n}": ([1, 2], [n, n + 1]) for n in range(20)}, "t", "y")
    finally:
        Figure.savefig = original
    assert drawn == {"lines": charts.MAX_SERIES, "legend": f"({20 - charts.MAX_SERIES} more not shown)"}


@FEW
@given(rows=st.lists(st.tuples(LABELS, NUMBERS, NUMBERS, NUMBERS), max_size=30))
@example(rows=[("a", 0.0, 2.2e-19, 0.004)])
@example(rows=[("lows above highs", 0.5, 0.9, 0.1)])
def test_intervals_draw_for_any_data(rows):
    """Any labels, any values (None, NaN, infinities, bounds on the wrong side): a PNG, never an error."""
    labels, values, lows, highs = (list(column) for column in zip(*rows)) if rows else ([], [], [], [])
    assert is_png(charts.intervals(labels, values, lows, highs, "title", "x"))


@FEW
@given(series=st.dictionaries(LABELS, st.lists(NUMBERS, max_size=12), max_size=12))
def test_line_charts_draw_for_any_data(series):
    """Lines and version histories of any values draw, including empty and all-NaN series."""
    assert is_png(charts.lines({name: (list(range(len(values))), values) for name, values in series.items()}, "t", "y"))
    assert is_png(charts.metric_history({name: {"0 events": values, "3 events": values[::-1]}
                                         for name, values in series.items()}, "t", "y"))


@FEW
@given(groups=st.lists(LABELS, max_size=20), series=st.dictionaries(LABELS, st.lists(NUMBERS, max_size=20), max_size=10))
def test_grouped_bars_draw_for_any_data(groups, series):
    """Grouped bars with mismatched lengths, no groups or no series draw too."""
    assert is_png(charts.grouped_bars(groups, series, "t", "y"))


def test_the_offline_history_is_by_version_with_one_colour_per_strategy():
    """The offline chart drew 18 series in 10 colours against training seconds; now: one colour per
    strategy (one line style per reveal), x = versions back from each strategy's newest."""
    from matplotlib.figure import Figure

    seen = {}
    original = Figure.savefig

    def spy(figure, *args, **kwargs):
        axes = figure.axes[0]
        drawn = [line for line in axes.get_lines() if line.get_xydata().size]
        seen["colours"] = {line.get_label(): line.get_color() for line in drawn if not line.get_label().startswith("_")}
        seen["ticks"] = [tick.get_text() for tick in axes.get_xticklabels()]
        seen["xlabel"] = axes.get_xlabel()
        return original(figure, *args, **kwargs)

    history = {f"strategy-{number}": {"0 events": [0.1, 0.2, 0.3], "3 events": [0.2, 0.3, 0.4]} for number in range(12)}
    Figure.savefig = spy
    try:
        charts.metric_history(history, "t", "NDCG@10")
    finally:
        Figure.savefig = original
    assert len(seen["colours"]) == charts.MAX_SERIES and len(set(seen["colours"].values())) == charts.MAX_SERIES
    assert seen["ticks"] == ["-2", "-1", "newest"] and "versions back" in seen["xlabel"]


def test_a_first_version_of_each_strategy_is_drawn_as_bars():
    """With one version per strategy there is no history to draw lines of: one bar per strategy and reveal."""
    from matplotlib.figure import Figure

    seen = {}
    original = Figure.savefig

    def spy(figure, *args, **kwargs):
        axes = figure.axes[0]
        seen["bars"] = len(axes.patches)
        seen["groups"] = [tick.get_text() for tick in axes.get_xticklabels()]
        return original(figure, *args, **kwargs)

    Figure.savefig = spy
    try:
        charts.metric_history({"hybrid": {"0 events": [0.19], "3 events": [0.17]}, "popularity": {"0 events": [0.11]}},
                              "t", "NDCG@10")
    finally:
        Figure.savefig = original
    assert seen["groups"] == ["hybrid", "popularity"] and seen["bars"] == 4  # popularity's missing bar is NaN
