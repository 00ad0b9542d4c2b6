"""What the CLI prints as tables (rich, imported when a table is printed)."""


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("metric", "value")) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def format_value(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
