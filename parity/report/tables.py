"""Terminal tables that read at any width: the table as it is when it fits, else one block per row.

Why: Rich shrinks a table that is wider than the terminal by cutting every cell (`candid…`, `swit…`, `$0.0…`),
which at 80 columns leaves nothing to read. Stacking keeps every value whole: each row becomes "column  value"
lines under its first cell, the way `kubectl describe` reads where `kubectl get` does not fit.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def fits(table: Table, console: Console) -> bool:
    """Whether `table` shows every cell whole in `console`'s width."""
    unbounded = console.options.update_width(1_000_000)  # the width it wants, not the width it is given
    return Measurement.get(console, unbounded, table).maximum <= console.width


def stacked(table: Table) -> Group:
    """`table` as one block per row: the first cell as the block's heading, then each other column and value."""
    headers = [_plain(c.header) for c in table.columns]
    columns = [list(c.cells) for c in table.columns]
    blocks: list[RenderableType] = []
    if table.title:
        blocks.append(Text.from_markup(str(table.title), style="bold") if isinstance(table.title, str)
                      else table.title)
    for r in range(table.row_count):
        cells = [col[r] if r < len(col) else "" for col in columns]
        heading = Text.assemble((f"{headers[0]}: " if headers[0] else "", "dim"), _text(cells[0]), style="bold")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for header, cell in zip(headers[1:], cells[1:]):
            if _plain(cell):
                grid.add_row(header, cell)
        blocks.extend([heading, Padding(grid, (0, 0, 0, 2))])
    if table.caption:
        blocks.append(Text.from_markup(str(table.caption), style="dim") if isinstance(table.caption, str)
                      else table.caption)
    return Group(*blocks)


def fit(table: Table, console: Console) -> RenderableType:
    """The table when it fits the console, else its stacked form."""
    return table if fits(table, console) else stacked(table)


def _text(cell: RenderableType) -> Text:
    return Text.from_markup(cell) if isinstance(cell, str) else cell if isinstance(cell, Text) else Text(str(cell))


def _plain(cell: RenderableType) -> str:
    return _text(cell).plain.strip() if isinstance(cell, (str, Text)) else str(cell)


__all__ = ["fit", "fits", "stacked"]
