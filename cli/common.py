"""What every command shares: clean exits on bad input, consoles, progress bars, JSON output.

Commands import the library inside their bodies, so `effnet --help` and `effnet COMMAND --help`
load neither torch nor optuna.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import typer
from rich.console import Console

console = Console(highlight=False)
"""Tables and summaries; commands print none of them under `--json`, which owns stdout."""

progress_console = Console(stderr=True, highlight=False)
"""Progress bars and notes go to stderr, so they never mix into `--json` output."""

F = TypeVar("F", bound=Callable[..., Any])


def shown(text: str) -> str:
    """Text as it may be printed or logged: every password of the command line's URLs hidden."""
    from effnet.nas.redact import argv_secrets, redact

    return redact(text, argv_secrets(sys.argv))


def literal(value: Any) -> str:
    """Text from the user (a path, a spec or class name, a message quoting them) as rich shows it: as
    written, never read as markup (`[/x]` in a folder name would otherwise end a style, or fail)."""
    from rich.markup import escape

    return escape(str(value))


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM), raised where the command is, so that every `finally` runs: temporary
    files are removed and the exit says "interrupted" with code 128 + `signum`."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []
_told: list[str] = []


def raise_on_stop_signals() -> None:
    """From now on SIGINT and SIGTERM raise `Stopped` (SIGTERM would otherwise end the process at once,
    leaving its temporary files); a study installs its own handlers while it runs and puts these back."""

    def stop(signum: int, frame: Any) -> None:
        _received.append(signum)
        raise Stopped(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


def stop_signal() -> int | None:
    """The last stop signal this process received (by these handlers or a study's), or None."""
    if _received:
        return _received[-1]
    from effnet.nas.study.signals import stop_requested

    return stop_requested()


def say_interrupted(text: str) -> None:
    """The command's own "interrupted: ..." line (the entry point then adds none)."""
    _told.append(text)
    progress_console.print(literal(text), soft_wrap=True)


def interrupted_exit(code: int) -> int:
    """The exit code of a command that ended with `code`: after a stop signal, 128 + that signal (typer turns
    any KeyboardInterrupt into 130), with an "interrupted" line unless the command said one."""
    if code not in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        return code
    if not _told:
        print("interrupted", file=sys.stderr, flush=True)
    return 128 + (stop_signal() or code - 128)


def fail(message: str) -> "typer.Exit":
    """Print one line naming the problem and the fix; the caller raises the returned Exit(2)."""
    print(f"error: {shown(' '.join(str(message).split()))}", file=sys.stderr, flush=True)
    return typer.Exit(2)


def flag_for(setting: str, flags: Mapping[str, str] | None = None) -> str:
    """The command-line flag of a library setting: `proxy_epochs` -> `--proxy-epochs` unless mapped."""
    return (flags or {}).get(setting, "--" + setting.replace("_", "-"))


def clean_input_errors(flags: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Turn the library's `InputError` into one line on stderr and exit code 2, with no traceback; a
    `SettingError` is worded with the command's flag for the setting (`flags` maps the exceptions to the
    `--` + name rule)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from effnet.nas.errors import InputError, SettingError

            try:
                return fn(*args, **kwargs)
            except SettingError as err:
                raise fail(f"{flag_for(err.setting, flags)} {err.problem}") from None
            except InputError as err:
                raise fail(str(err)) from None

        return wrapper  # type: ignore[return-value]

    return decorate


_run_dir: list[Path] = []


def set_run_dir(path: Path | None) -> None:
    """Where a crash log goes if the command fails unexpectedly (None: not known yet)."""
    _run_dir[:] = [] if path is None else [path]


def write_crash_log() -> Path:
    """Save the current exception's traceback (passwords hidden) as error.log in the run directory, or
    where that is not known or writable, in a file of its own in the temp dir; return its path."""
    from effnet.nas.files import write_error_log

    return write_error_log(_run_dir[0] / "error.log" if _run_dir else None, shown(traceback.format_exc()))


def print_notes(notes: list[str]) -> None:
    """What the library says the user should know about a run (a repaired journal, a failed worker),
    one line each on stderr."""
    for note in notes:
        progress_console.print(f"[yellow]warning:[/] {literal(note)}", soft_wrap=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


class ProgressBar:
    """One rich progress bar on stderr for every command: `update(done, total, status)`, or call it with
    the library's `StudyProgress`. Use it as a context manager; disabled, it shows nothing. It appears
    with the first update (after the library has checked its input, so a refusal stays one line),
    preceded by `header` if given."""

    def __init__(self, label: str, enabled: bool = True, header: str | None = None):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(  # status and stage are shown as written (`literal` in `update`)
            TextColumn(f"[bold]{literal(label)}[/]" + " {task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=progress_console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task(label, total=None, stage="", status="")
        self.enabled = enabled
        self.header = header
        self.started = False

    def update(self, done: int | None = None, total: int | None = None, status: str | None = None,
               stage: str | None = None) -> None:
        if not self.started:
            self.started = True
            if self.enabled and self.header:
                progress_console.print(literal(self.header), soft_wrap=True)
            self.progress.start()
        fields: dict[str, Any] = {}
        if total is not None:
            fields["total"] = total
        if done is not None:
            fields["completed"] = done
        if status is not None:
            fields["status"] = literal(status)
        if stage is not None:
            fields["stage"] = literal(stage)
        self.progress.update(self.task, **fields)

    def advance(self, steps: int = 1) -> None:
        self.progress.advance(self.task, steps)

    def __call__(self, progress: Any) -> None:
        self.update(progress.done, progress.total, progress.status)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.progress.stop()


def warn_skipped(data: dict) -> None:
    """A visible line when images were left out because they do not decode (run.yaml lists them)."""
    if data.get("skipped"):
        first = data["skipped_files"][0]
        progress_console.print(f"[yellow]warning:[/] {data['skipped']} image file(s) did not decode and were left "
                               f"out (first: {literal(first)}); run.yaml lists them")


def exit_for_signal(signum: int | None, what: str) -> None:
    """After a run stopped by a signal: say how to resume and exit 128 + signal (130 Ctrl-C, 143 SIGTERM)."""
    if signum is None:
        return
    say_interrupted(f"interrupted: {what} saved; rerun the same command to resume")
    raise typer.Exit(128 + signum)
