"""Charts as SVG, drawn by matplotlib (Agg canvas, SVG backend): the robustness chart an audit
leaves in its run folder, and the charts the dashboard (``govssl serve``) draws from a stored
run's measurements. Every chart is reproducible: a fixed ``svg.hashsalt`` for element ids and no
creation date in its metadata.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

__all__ = ["Interval", "interval_chart_svg", "line_chart_svg"]

_RC = {"svg.hashsalt": "govssl", "svg.fonttype": "path", "font.size": 9}
LIMIT_COLOUR = "#c0392b"
# matplotlib's rcParams are global: one chart at a time, so that no thread's rc_context is undone
# under another's drawing (the dashboard draws in a thread pool)
_DRAWING = threading.RLock()


class Interval(NamedTuple):
    """One row of an interval chart: a label, the estimate and its interval (None: not computed)."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None


@contextmanager
def _figure(size: tuple[float, float], layout: str | None = None) -> Iterator:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _DRAWING, matplotlib.rc_context(_RC):
        figure = Figure(figsize=size, layout=layout)
        FigureCanvasAgg(figure)
        yield figure


def _svg(figure) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return out.getvalue()


def line_chart_svg(title: str, x_label: str, y_label: str,
                   panels: dict[str, dict[str, list[tuple[float, float]]]], overall: str = "all test rows",
                   thresholds: list[tuple[float | None, float, str]] = ()) -> str:
    """An SVG line chart, one panel per key of ``panels``.

    Each panel maps a series name to its (x, y) points, y in [0, 1] (accuracies, rates); the
    series named ``overall`` is drawn thick and black, the others (per group) thin. Each of
    ``thresholds`` (x or None, y, label) is a dashed red line at y in every panel (a policy's
    limit), with a cross at x where the limit applies to one x only.
    """
    with _figure((4.2 * max(len(panels), 1) + 2.4, 3.8)) as figure:
        n = max(len(panels), 1)
        axes = figure.subplots(1, n, sharey=True, squeeze=False)[0]
        handles: dict[str, object] = {}
        for ax, (name, series) in zip(axes, panels.items()):
            for i, (label, points) in enumerate(series.items()):
                points = sorted((float(x), float(y)) for x, y in points if np.isfinite(y))
                if not points:
                    continue
                xs, ys = zip(*points)
                if label == overall:
                    (line,) = ax.plot(xs, ys, color="black", linewidth=2.4, marker="o", zorder=3)
                else:
                    (line,) = ax.plot(xs, ys, color=f"C{i % 10}", linewidth=1.2, marker=".", alpha=0.85)
                handles.setdefault(label, line)
            for x, y, label in thresholds:
                (line,) = ax.plot([], [], color=LIMIT_COLOUR, linestyle="--", linewidth=1.2)
                ax.axhline(y, color=LIMIT_COLOUR, linestyle="--", linewidth=1.2, zorder=2)
                if x is not None:
                    ax.plot([x], [y], color=LIMIT_COLOUR, marker="x", markersize=8, zorder=4)
                handles.setdefault(label, line)
            ax.set_title(name)
            ax.set_xlabel(x_label)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, color="#dddddd", linewidth=0.6)
        axes[0].set_ylabel(y_label)
        figure.suptitle(title)
        if handles:
            figure.legend(list(handles.values()), list(handles), loc="center left",
                          bbox_to_anchor=(0.80, 0.5), frameon=False, fontsize=8)
        figure.subplots_adjust(left=0.07, right=0.78, bottom=0.15, top=0.85, wspace=0.08)
        return _svg(figure)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def interval_chart_svg(title: str, panels: dict[str, list[Interval]], x_label: str = "",
                       limits: dict[str, list[tuple[float, str]]] | None = None,
                       x_range: tuple[float, float] | dict | None = (0.0, 1.0)) -> str:
    """Estimates with their intervals, one row per :class:`Interval`, one panel per key of
    ``panels`` (e.g. per-group rates with their 95% intervals, one panel per metric).

    A dot is the estimate, the bar its interval (no bar where none was computed); a value that
    is not a finite number is left out and its label says "(no value)". ``limits`` maps a panel
    to (x, label) lines drawn dashed red (a policy's limit, a reference value). ``x_range``
    fixes the x axis (None: from the data), or each panel's when it maps panels to ranges.
    """
    limits = limits or {}
    panels = {name: rows for name, rows in panels.items() if rows}
    n_rows = max((len(rows) for rows in panels.values()), default=1)
    n = max(len(panels), 1)
    with _figure((3.6 * n + 2.2, 1.4 + 0.28 * n_rows), layout="constrained") as figure:
        axes = figure.subplots(1, n, sharey=True, squeeze=False)[0]
        labels = list(dict.fromkeys(row.label for rows in panels.values() for row in rows))
        ys = {label: i for i, label in enumerate(reversed(labels))}
        for ax, (name, rows) in zip(axes, panels.items()):
            for row in rows:
                y = ys[row.label]
                if not _finite(row.value):
                    ax.text(0.02, y, "(no value)", transform=ax.get_yaxis_transform(), va="center",
                            fontsize=7, color="#777777")
                    continue
                if _finite(row.low) and _finite(row.high):
                    ax.plot([row.low, row.high], [y, y], color="#34495e", linewidth=2.2, alpha=0.55,
                            solid_capstyle="butt")
                ax.plot([row.value], [y], color="black", marker="o", markersize=4, zorder=3)
            for x, label in limits.get(name, ()):
                ax.axvline(x, color=LIMIT_COLOUR, linestyle="--", linewidth=1.1, zorder=2, label=label)
            if limits.get(name):
                ax.legend(loc="lower right", fontsize=7, frameon=False)
            ax.set_title(name)
            limits_x = x_range.get(name) if isinstance(x_range, dict) else x_range
            if limits_x is not None:
                ax.set_xlim(*limits_x)
            ax.set_xlabel(x_label)
            ax.grid(True, axis="x", color="#dddddd", linewidth=0.6)
        axes[0].set_yticks(list(ys.values()), list(ys.keys()))
        axes[0].set_ylim(-0.7, len(ys) - 0.3)
        figure.suptitle(title)
        return _svg(figure)
