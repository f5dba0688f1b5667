"""The `effnet` Typer application and its entry point.

Command modules import the library inside their bodies: `effnet --help` loads neither torch nor optuna.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from effnet.cli.common import (
    emit_json,
    interrupted_exit,
    json_requested,
    raise_on_stop_signals,
    report_error,
    set_run_dir,
    shown,
    write_crash_log,
)
from effnet.cli.describe import describe
from effnet.cli.export_family import export_family
from effnet.cli.export_model import export_model
from effnet.cli.grid_scale import grid_scale
from effnet.cli.latency_table import latency_table
from effnet.cli.predict import predict
from effnet.cli.proxy_check import proxy_check
from effnet.cli.search import search
from effnet.cli.train import train
from effnet.nas.cpus import configure_openmp


class _BareFlags:
    """Help that shows a flag as itself (`--json`), not as `--json <bool>`: a flag takes no value."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_BareFlags, TyperCommand):
    pass


class Group(_BareFlags, TyperGroup):
    pass


app = typer.Typer(
    name="effnet",
    cls=Group,
    help="Search a base network under a FLOPs budget, find how to grow it, and emit the grown family.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command(cls=Command)(search)
app.command("grid-scale", cls=Command)(grid_scale)
app.command("export-family", cls=Command)(export_family)
app.command("export-model", cls=Command)(export_model)
app.command(cls=Command)(describe)
app.command(cls=Command)(train)
app.command("proxy-check", cls=Command)(proxy_check)
app.command(cls=Command)(predict)
app.command("latency-table", cls=Command)(latency_table)


@app.callback()
def root() -> None:
    """effnet: search a base network, grid-search its scaling coefficients, export the family."""
    from effnet.nas.training.allocator import configure_allocator

    set_run_dir(None)  # until the command knows its run directory, a crash log goes to a file of its own
    configure_allocator()  # before any training allocates; EFFNET_ALLOCATOR=system turns it off


def main() -> None:
    """Entry point: bad input exits 2 inside the commands, and a value the command-line parser refuses (`--seed
    1e300`) exits 2 with the same one line; anything unexpected exits 1 with a log."""
    # the click that typer parses with: vendored as typer._click from typer 0.26 (this project's floor) on
    click_exceptions = importlib.import_module("typer._click.exceptions")
    configure_openmp()  # before any command imports torch, whose OpenMP runtime reads it once
    raise_on_stop_signals()  # a `finally` runs on SIGTERM as on Ctrl-C: no temporary file is left behind
    try:
        code = app(standalone_mode=False, prog_name="effnet")
    except click_exceptions.UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare `effnet`: the help, as click shows it
            err.show()
            raise SystemExit(err.exit_code) from None
        where = f" (see {err.ctx.command_path} --help)" if err.ctx is not None else ""
        report_error(f"{' '.join(err.format_message().split())}{where}", 2)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except Exception as err:
        log = write_crash_log()
        what = f"unexpected error: {type(err).__name__}: {shown(' '.join(str(err).split()))[:300]}"
        print(f"effnet: {what} (traceback in {log})", file=sys.stderr)
        if json_requested():
            emit_json({"error": what, "exit_code": 1, "traceback": str(log)})
        raise SystemExit(1) from None
    if code:  # a command's own exit code (typer.Exit), returned rather than raised outside standalone mode
        raise SystemExit(interrupted_exit(code))
