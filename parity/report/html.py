"""A tiny builder for self-contained, offline HTML pages: inline CSS, inline SVG, no scripts, no external links.

Everything passed as text is escaped; only `Safe` fragments (the SVG that `parity.report.plots` renders, or
fragments built by this module) go in verbatim.
"""

from __future__ import annotations

import html as _html
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from parity.files import write_atomic

__all__ = ["Page", "Safe", "badge", "escape", "table"]


class Safe(str):
    """A fragment of HTML/SVG that is already safe to insert verbatim."""


def escape(value: Any) -> str:
    """HTML-escape any value (quotes included); Safe fragments pass through."""
    if isinstance(value, Safe):
        return value
    return _html.escape("" if value is None else str(value), quote=True)


CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#dde1e8;--bg:#fff;--soft:#f5f7fa;--accent:#2f5bd3;--warn:#a15c00;--good:#1c7c4a;--bad:#b3261e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:28px 24px 60px}
header{border-bottom:1px solid var(--line);margin-bottom:20px;padding-bottom:12px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 10px}h3{font-size:16px;margin:20px 0 8px}
p{margin:8px 0}.muted{color:var(--muted)}
.badge{display:inline-block;font-size:12px;font-weight:600;padding:2px 8px;border-radius:10px;vertical-align:middle;
 background:var(--soft);border:1px solid var(--line);color:var(--muted);margin-left:6px}
.badge.simulated{background:#fff4e0;border-color:#f0c36d;color:var(--warn)}
.badge.good{background:#e8f5ee;border-color:#9fd3b5;color:var(--good)}
.badge.bad{background:#fdecea;border-color:#f2a8a2;color:var(--bad)}
.notice{background:#fff4e0;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px;color:var(--warn);margin:12px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{flex:1 1 180px;border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--soft)}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:22px;font-weight:600}
table{border-collapse:collapse;width:100%;margin:8px 0 16px;font-size:14px}
th,td{border-bottom:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;background:var(--soft);padding:1px 4px;border-radius:3px}
figure{margin:12px 0 20px}figure svg{max-width:100%;height:auto}figcaption{color:var(--muted);font-size:13px}
footer{margin-top:40px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:10px}
"""


def badge(text: str, kind: str = "") -> Safe:
    """A small inline label, e.g. badge("simulated", "simulated")."""
    cls = "badge" + (f" {escape(kind)}" if kind else "")
    return Safe(f'<span class="{cls}">{escape(text)}</span>')


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, numeric: Iterable[int] = ()) -> Safe:
    """An HTML table; cells are escaped unless Safe; columns in `numeric` are right-aligned."""
    right = set(numeric)
    head = "".join(f'<th class="num">{escape(h)}</th>' if i in right else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{escape(c)}</td>' if i in right else f"<td>{escape(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return Safe(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


class Page:
    """Build a page section by section, then `render()` or `write(path)` it as one self-contained file."""

    def __init__(self, title: str, *, subtitle: str | None = None, simulated: bool = False,
                 simulated_note: str = "Numbers on this page come from the simulated emulator, not a real model."):
        self.title = title
        self.subtitle = subtitle
        self.simulated = simulated
        self.simulated_note = simulated_note
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2, *, badges: Sequence[Safe] = ()) -> Page:
        level = min(max(level, 2), 4)
        self._parts.append(f"<h{level}>{escape(text)}{''.join(badges)}</h{level}>")
        return self

    def paragraph(self, text: Any, *, muted: bool = False) -> Page:
        cls = ' class="muted"' if muted else ""
        self._parts.append(f"<p{cls}>{escape(text)}</p>")
        return self

    def notice(self, text: Any) -> Page:
        self._parts.append(f'<div class="notice">{escape(text)}</div>')
        return self

    def cards(self, items: Mapping[str, Any]) -> Page:
        """Headline numbers as a row of cards: {label: value}."""
        cards = "".join(f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>'
                        for k, v in items.items())
        self._parts.append(f'<div class="cards">{cards}</div>')
        return self

    def table(self, headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, numeric: Iterable[int] = ()) -> Page:
        self._parts.append(table(headers, rows, numeric=numeric))
        return self

    def figure(self, svg: Safe, caption: str | None = None) -> Page:
        if not isinstance(svg, Safe):
            raise TypeError("figure() takes the Safe SVG that parity.report.plots renders")
        cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f"<figure>{svg}{cap}</figure>")
        return self

    def html(self, fragment: Safe) -> Page:
        """Append a Safe fragment built with this module's helpers."""
        if not isinstance(fragment, Safe):
            raise TypeError("html() takes a Safe fragment; pass text to paragraph() to have it escaped")
        self._parts.append(fragment)
        return self

    def render(self) -> str:
        sim = badge("simulated", "simulated") if self.simulated else ""
        note = f'<div class="notice">{escape(self.simulated_note)}</div>' if self.simulated else ""
        sub = f'<p class="muted">{escape(self.subtitle)}</p>' if self.subtitle else ""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{escape(self.title)}</title><style>{CSS}</style></head><body><main>"
            f"<header><h1>{escape(self.title)}{sim}</h1>{sub}{note}</header>"
            + "".join(self._parts)
            + f"<footer>Generated by Parity on {escape(stamp)}. Self-contained: no scripts, no network.</footer>"
            "</main></body></html>\n"
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the page atomically (a temp file then rename); returns the path."""
        return write_atomic(path, self.render())
