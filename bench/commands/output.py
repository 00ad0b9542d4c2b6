"""What the CLI prints as tables: rich tables that keep every method name and column header whole in an 80-column
terminal (rich is imported when a table is printed, so `bench --help` stays instant)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.runs.compare import Comparison


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("metric", "value"),
                caption: str | None = None) -> None:
    """Print `rows` under `header`: names in the first column, values right-aligned in the others.

    Rich fits a table to the terminal by cutting cells with an ellipsis; here the value columns never wrap and the
    first column folds a name too long for the width onto a second line instead, so no character is lost. Columns
    are separated by one space and a rule under the header, without a frame, to leave the width to the cells."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True, min_width=len(title))
    table.add_column(header[0], overflow="fold")
    for name in header[1:]:
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def print_comparison(title: str, comparison: "Comparison") -> None:
    """`bench run`'s closing table: the run and its complete neighbours, one row each, under the short metric
    headers of `bench.runs.compare.COLUMNS` with their legend as the caption."""
    from bench.runs.compare import COLUMNS, LEGEND

    rows = [(label, *(format_value(metrics.get(column, "")) for column in COLUMNS))
            for label, metrics in comparison.rows]
    print_table(title, rows, ("method", *COLUMNS.values()), caption=LEGEND)


def format_value(value: object) -> str:
    """Floats to four decimals (the precision the metrics are compared at); anything else as it is."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)
