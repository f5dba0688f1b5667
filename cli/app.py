"""The `effnet` Typer application and its entry point."""

from __future__ import annotations

import typer

from effnet.cli.describe import describe

app = typer.Typer(
    name="effnet",
    help="Search a base network under a FLOPs budget, find how to grow it, and emit the grown family.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(describe)


@app.callback()
def root() -> None:
    """effnet: search a base network, grid-search its scaling coefficients, export the family."""


def main() -> None:
    app()
