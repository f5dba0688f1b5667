"""What every command shares: clean exits on bad input, consoles, progress bars, JSON output.

Commands import the library inside their bodies, so `effnet --help` and `effnet COMMAND --help`
load neither torch nor optuna.
"""

from __future__ import annotations

import functools
import importlib
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

WIDE = 1000
"""The width of stdout when it is not a terminal (a file, a pipe): a table is as wide as its content."""

console = Console(highlight=False, width=None if sys.stdout.isatty() else WIDE)
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
    from effnet.nas.signals import last_stop_signal

    return last_stop_signal()


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
    code = 128 + (stop_signal() or code - 128)
    if json_requested() and not _emitted:  # stopped before any result: still one object on stdout
        emit_json({"error": _told[-1] if _told else "interrupted", "exit_code": code})
    return code


def fail(message: str) -> typer.Exit:
    """Print one line naming the problem and the fix; the caller raises the returned Exit(2)."""
    report_error(shown(" ".join(str(message).split())), 2)
    return typer.Exit(2)


def report_error(text: str, exit_code: int, **details: Any) -> None:
    """The one `error:` line on stderr; under `--json` also one JSON object on stdout (`error`, `exit_code` and
    `details`), so that a script reading stdout gets an object whether the command succeeded or not."""
    print(f"error: {text}", file=sys.stderr, flush=True)
    if json_requested():
        emit_json({"error": text, "exit_code": exit_code, **details})


def json_requested() -> bool:
    """Whether the command line asks for `--json`: the command's parsed flag once it is parsed, else the word on
    the command line (a value the parser refused, an error outside the command)."""
    context = importlib.import_module("typer._click.globals").get_current_context(silent=True)
    if context is not None and "as_json" in context.params:
        return bool(context.params["as_json"])
    return "--json" in sys.argv[1:]


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


_emitted: list[bool] = []


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
    _emitted.append(True)


class ProgressBar:
    """The progress of every command, on stderr: `update(done, total, status)`, or call it with the library's
    `Progress`. Use it as a context manager; disabled, it shows nothing. It appears with the first update
    (after the library has checked its input, so a refusal stays one line), preceded by `header` if given.

    On a terminal it is one rich bar, with what the unit in hand is doing (a candidate's epoch). Elsewhere (a
    log file, a pipe) and with `plain` (a command's `--json`), it is plain lines with the elapsed time, the header
    before the first: one as the units start and one per finished unit (a candidate, a grid evaluation, an epoch
    of `train`: `update(line=True)`), and while the work before the units runs (decoding the data) one every
    `PLAIN_EVERY_S` seconds, the first after as long, so that input refused there stays one line."""

    PLAIN_EVERY_S = 15.0

    def __init__(self, label: str, enabled: bool = True, header: str | None = None, plain: bool = False):
        self.label = label
        self.enabled = enabled
        self.header = header
        self.plain = plain or not progress_console.is_terminal
        self.started = False
        self.progress: Any = None
        self.began = time.monotonic()
        self.last_line: float | None = None
        self.state: dict[str, Any] = {"done": None, "total": None, "status": "", "stage": ""}
        self.printed: tuple[Any, ...] | None = None
        if enabled and not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn(f"[bold]{literal(label)}[/]" + " {task.fields[stage]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=progress_console,
                transient=False,
            )
            self.task = self.progress.add_task(label, total=None, stage="", status="")

    def update(
        self,
        done: int | None = None,
        total: int | None = None,
        status: str | None = None,
        stage: str | None = None,
        line: bool = False,
        preparing: bool = False,
    ) -> None:
        """`line`: the units start or one has finished (a line in plain mode); `preparing`: the work before them."""
        if not self.enabled:
            return
        if not self.started:
            self.started = True
            self.began = time.monotonic()
            if self.progress is not None:
                self._header()
                self.progress.start()
        fields = {
            key: value
            for key, value in (("done", done), ("total", total), ("status", status), ("stage", stage))
            if value is not None
        }
        self.state.update(fields)
        if self.progress is not None:
            names = {"done": "completed", "total": "total", "status": "status", "stage": "stage"}
            # status and stage are shown as written: a class folder or spec name is no markup
            self.progress.update(
                self.task,
                **{
                    names[key]: literal(value) if key in ("status", "stage") else value for key, value in fields.items()
                },
            )
            return
        now = time.monotonic()
        if line or (preparing and now - (self.last_line or self.began) >= self.PLAIN_EVERY_S):
            self._line(now)

    def _header(self) -> None:
        if self.header:
            progress_console.print(self.header, soft_wrap=True, markup=False)

    def _line(self, now: float) -> None:
        """One plain line of the state now (the header first), unless it says what the last one said."""
        state = self.state
        shown = (state["done"], state["total"], state["status"], state["stage"])
        if shown == self.printed:
            return
        if self.last_line is None:
            self._header()
        self.printed, self.last_line = shown, now
        count = (
            ""
            if state["done"] is None
            else (f" {state['done']}" + ("" if state["total"] is None else f"/{state['total']}"))
        )
        words = " ".join(part for part in (f"{self.label}{count}", state["stage"], state["status"]) if part)
        elapsed = int(now - self.began)
        progress_console.print(
            f"[{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {words}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )

    def advance(self, steps: int = 1) -> None:
        """`steps` more done: the bar moves; a plain line waits for the end of the unit."""
        if self.enabled:
            self.state["done"] = (self.state["done"] or 0) + steps
            if self.progress is not None:
                self.progress.advance(self.task, steps)

    def __call__(self, progress: Any) -> None:
        """The library's `Progress`: a plain line when its count of units moves, not for its detail."""
        line = not progress.preparing and progress.done != self.state["done"]
        if self.progress is not None and progress.detail:
            status = f"{progress.status} · {progress.detail}" if progress.status else progress.detail
        else:
            status = progress.status
        self.update(progress.done, progress.total, status, line=line, preparing=progress.preparing)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started and self.progress is not None:
            self.progress.stop()


def warn_skipped(data: dict, said: set[tuple[str, ...]] | None = None) -> None:
    """A visible line when images were left out because they do not decode (run.yaml lists them), and one for
    each of the data's notes (a damaged cache rebuilt). `said`: the lists of files already warned of, for data
    read more than once (a grid's proxy at each resolution): the same files are named once."""
    print_notes(data.get("notes", []))
    files = tuple(data.get("skipped_files", ()))
    if said is not None:
        if files in said:
            return
        said.add(files)
    if data.get("skipped"):
        first = data["skipped_files"][0]
        progress_console.print(
            f"[yellow]warning:[/] {data['skipped']} image file(s) did not decode and were left "
            f"out (first: {literal(first)}); run.yaml lists them"
        )


def exit_for_signal(signum: int | None, what: str) -> None:
    """After a run stopped by a signal: say how to resume and exit 128 + signal (130 Ctrl-C, 143 SIGTERM)."""
    if signum is None:
        return
    say_interrupted(f"interrupted: {what} saved; rerun the same command to resume")
    raise typer.Exit(128 + signum)
