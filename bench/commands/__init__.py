"""The `bench` command line's commands, by concern; `cli.py` assembles them into one Typer app."""
