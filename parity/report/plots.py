"""Plots as inline SVG strings (matplotlib's Figure and SVG canvas directly: no pyplot, no GUI backend, no global
state), the charts every Parity page shares.

Each function returns a `Safe` SVG fragment ready for `Page.figure()`. Text stays text (`svg.fonttype: none`),
metadata and the DOCTYPE are stripped so the page references nothing outside itself, and `$` in labels is
escaped so user strings are never read as mathtext. Values may be Decimal (money); they are converted to float
only to draw.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from parity.report.html import Safe

__all__ = [
    "PALETTE", "bar_svg", "confidence_sequence_svg", "histogram_svg", "line_svg", "stacked_bar_svg",
    "waterfall_svg", "win_tie_loss_svg",
]

PALETTE = ["#2f5bd3", "#e08a1e", "#1c7c4a", "#b3261e", "#7a4fc9", "#0f8b8d", "#c2185b", "#6d6d6d", "#9c7b00", "#3d7dca"]
GOOD, BAD, TIE, NEUTRAL = "#1c7c4a", "#b3261e", "#9aa3b2", "#2f5bd3"
_counter = itertools.count()


def _t(text: Any) -> str:
    """A label safe for matplotlib: `$` would start mathtext."""
    return str(text).replace("$", r"\$")


def _f(value: Any) -> float:
    return float(value) if isinstance(value, (int, float, Decimal)) else float(str(value))


def _figure(width: float = 8.0, height: float = 3.6) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e6e9ef", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _svg(fig: Figure) -> Safe:
    """The figure as an <svg> element whose ids are unique to it, so several can share one page."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "parity",
                                "font.family": ["DejaVu Sans", "sans-serif"]}):
        FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    prefix = f"pf{next(_counter)}-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return Safe(text.strip())


def _titles(ax: Any, title: str | None, xlabel: str | None, ylabel: str | None) -> None:
    if title:
        ax.set_title(_t(title), loc="left", fontsize=12)
    if xlabel:
        ax.set_xlabel(_t(xlabel))
    if ylabel:
        ax.set_ylabel(_t(ylabel))


def _x(values: Sequence[Any]) -> list[Any]:
    return [v if isinstance(v, (date, datetime, int, float)) else str(v) for v in values]


def line_svg(series: Mapping[str, Sequence[tuple[Any, Any]]], *, title: str | None = None,
             xlabel: str | None = None, ylabel: str | None = None) -> Safe:
    """One line per series of (x, y) points; x may be dates or datetimes (a plot over time)."""
    fig, ax = _figure()
    for (name, points), color in zip(series.items(), itertools.cycle(PALETTE)):
        pts = list(points)
        ax.plot(_x([p[0] for p in pts]), [_f(p[1]) for p in pts], label=_t(name), color=color, linewidth=1.8,
                marker="o" if len(pts) < 30 else None, markersize=3)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=9)
    fig.autofmt_xdate() if any(isinstance(p[0], (date, datetime)) for s in series.values() for p in s) else None
    _titles(ax, title, xlabel, ylabel)
    return _svg(fig)


def bar_svg(labels: Sequence[Any], values: Sequence[Any], *, title: str | None = None, xlabel: str | None = None,
            ylabel: str | None = None, horizontal: bool = False, color: str = NEUTRAL,
            value_format: str = "{:,.2f}") -> Safe:
    """Bars with their values written on them; horizontal suits long labels (families, models)."""
    fig, ax = _figure(8.0, max(2.4, 0.42 * len(labels) + 1.0) if horizontal else 3.6)
    names = [_t(lab) for lab in labels]
    heights = [_f(v) for v in values]
    bars = ax.barh(names, heights, color=color) if horizontal else ax.bar(names, heights, color=color)
    if horizontal:
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.grid(axis="x", color="#e6e9ef", linewidth=0.8)
    ax.bar_label(bars, labels=[_t(value_format.format(h)) for h in heights], fontsize=8, padding=2)
    if not horizontal and len(labels) > 6:
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_ha("right")
    _titles(ax, title, xlabel, ylabel)
    return _svg(fig)


def stacked_bar_svg(labels: Sequence[Any], stacks: Mapping[str, Sequence[Any]], *, title: str | None = None,
                    xlabel: str | None = None, ylabel: str | None = None) -> Safe:
    """Bars split by category (e.g. spend per day by input / output / cache write / cache read).

    Negative values (a batch discount) stack downwards from zero, so each bar's top minus its bottom is the net.
    """
    fig, ax = _figure()
    names = [_t(lab) for lab in labels]
    up = [0.0] * len(labels)
    down = [0.0] * len(labels)
    for (category, values), color in zip(stacks.items(), itertools.cycle(PALETTE)):
        heights = [_f(v) for v in values]
        if len(heights) != len(labels):
            raise ValueError(f"stack {category!r} has {len(heights)} values for {len(labels)} labels")
        bottoms = [d if h < 0 else u for h, u, d in zip(heights, up, down)]
        ax.bar(names, heights, bottom=bottoms, label=_t(category), color=color, width=0.8)
        up = [u + max(h, 0.0) for u, h in zip(up, heights)]
        down = [d + min(h, 0.0) for d, h in zip(down, heights)]
    ax.legend(frameon=False, fontsize=9, ncols=min(4, max(1, len(stacks))), loc="upper left")
    top = max(up, default=0.0) or 1.0
    ax.set_ylim(min(down, default=0.0) * 1.1, top * 1.18)
    if min(down, default=0.0) < 0:
        ax.axhline(0.0, color="#9aa3b2", linewidth=0.8)
    if len(labels) > 8:
        step = max(1, len(labels) // 12)
        for index, tick in enumerate(ax.get_xticklabels()):
            tick.set_visible(index % step == 0)
            tick.set_rotation(30)
            tick.set_ha("right")
    _titles(ax, title, xlabel, ylabel)
    return _svg(fig)


def waterfall_svg(start: tuple[str, Any], steps: Sequence[tuple[str, Any]], end_label: str, *,
                  title: str | None = None, ylabel: str | None = None, value_format: str = "{:,.2f}") -> Safe:
    """A waterfall: the starting total, each step's change (savings are negative), and the resulting total."""
    fig, ax = _figure(8.0, 3.8)
    names = [_t(start[0])] + [_t(s[0]) for s in steps] + [_t(end_label)]
    level = _f(start[1])
    bottoms, heights, colors, texts = [0.0], [level], [NEUTRAL], [value_format.format(level)]
    for _, delta in steps:
        d = _f(delta)
        bottoms.append(level + d if d < 0 else level)
        heights.append(abs(d))
        colors.append(GOOD if d < 0 else BAD)
        texts.append(("−" if d < 0 else "+") + value_format.format(abs(d)))
        level += d
    bottoms.append(0.0)
    heights.append(level)
    colors.append(NEUTRAL)
    texts.append(value_format.format(level))
    bars = ax.bar(names, heights, bottom=bottoms, color=colors, width=0.6)
    ax.bar_label(bars, labels=[_t(t) for t in texts], fontsize=8, padding=2)
    for index in range(len(names) - 1):  # connectors between consecutive levels
        top = bottoms[index] + heights[index] if index == 0 or _f(steps[index - 1][1]) >= 0 else bottoms[index]
        ax.plot([index + 0.3, index + 0.7], [top, top], color="#9aa3b2", linewidth=0.8)
    if len(names) > 5:
        for tick in ax.get_xticklabels():
            tick.set_rotation(20)
            tick.set_ha("right")
    ax.set_ylim(0, max(b + h for b, h in zip(bottoms, heights)) * 1.15 or 1)
    _titles(ax, title, None, ylabel)
    return _svg(fig)


def confidence_sequence_svg(n: Sequence[Any], estimate: Sequence[Any], lower: Sequence[Any], margin_line: Any, *,
                            upper: Sequence[Any] | None = None, title: str | None = None,
                            xlabel: str = "prompts judged", ylabel: str = "candidate − baseline",
                            margin_label: str = "non-inferiority margin") -> Safe:
    """An anytime-valid confidence sequence over n: the running estimate, its lower bound (and upper, if given,
    as a band), and the boundary line the lower bound must clear (e.g. −margin) for the verdict to be 'switch'."""
    fig, ax = _figure(8.0, 3.8)
    xs = [_f(v) for v in n]
    est = [_f(v) for v in estimate]
    lo = [_f(v) for v in lower]
    if upper is not None:
        ax.fill_between(xs, lo, [_f(v) for v in upper], color=NEUTRAL, alpha=0.15, linewidth=0, label="confidence sequence")
    ax.plot(xs, lo, color=NEUTRAL, linewidth=1.2, linestyle="--", label="lower bound")
    ax.plot(xs, est, color=NEUTRAL, linewidth=1.8, label="estimate")
    ax.axhline(_f(margin_line), color=BAD, linewidth=1.4, label=_t(margin_label))
    ax.axhline(0.0, color="#9aa3b2", linewidth=0.8)
    crossed = next((x for x, low in zip(xs, lo) if low > _f(margin_line)), None)
    if crossed is not None:
        ax.axvline(crossed, color=GOOD, linewidth=1.0, linestyle=":", label=f"bound clears the margin at n={crossed:g}")
    ax.legend(frameon=False, fontsize=9, loc="lower right")
    _titles(ax, title, xlabel, ylabel)
    return _svg(fig)


def histogram_svg(values: Sequence[Any], *, bins: int | Sequence[float] = 20, title: str | None = None,
                  xlabel: str | None = None, ylabel: str = "count") -> Safe:
    """A histogram of values (latencies, token counts, per-prompt score differences)."""
    fig, ax = _figure()
    ax.hist([_f(v) for v in values], bins=bins, color=NEUTRAL, edgecolor="white", linewidth=0.5)
    _titles(ax, title, xlabel, ylabel)
    return _svg(fig)


def win_tie_loss_svg(wins: int | Sequence[int], ties: int | Sequence[int], losses: int | Sequence[int], *,
                     labels: Sequence[str] | None = None, title: str | None = None) -> Safe:
    """Horizontal 100% bars of candidate wins / ties / losses (one row, or one per label: judge order, task...)."""
    as_list = (lambda v: [v] if isinstance(v, int) else list(v))
    w, t, lo = as_list(wins), as_list(ties), as_list(losses)
    if not len(w) == len(t) == len(lo):
        raise ValueError("wins, ties and losses need the same number of rows")
    names = [_t(x) for x in (labels or ([""] if len(w) == 1 else [str(i + 1) for i in range(len(w))]))]
    fig, ax = _figure(8.0, 0.55 * len(w) + 1.3)
    ax.grid(axis="y", visible=False)
    left = [0.0] * len(w)
    for key, counts, color in (("win", w, GOOD), ("tie", t, TIE), ("loss", lo, BAD)):
        totals = [a + b + c for a, b, c in zip(w, t, lo)]
        shares = [c / total * 100 if total else 0.0 for c, total in zip(counts, totals)]
        bars = ax.barh(names, shares, left=left, color=color, label=key, height=0.6)
        ax.bar_label(bars, labels=[f"{c} ({s:.0f}%)" if s >= 8 else "" for c, s in zip(counts, shares)],
                     label_type="center", fontsize=8, color="white")
        left = [a + b for a, b in zip(left, shares)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of judged pairs")
    ax.invert_yaxis()
    ax.legend(frameon=False, fontsize=9, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    _titles(ax, title, None, None)
    return _svg(fig)
