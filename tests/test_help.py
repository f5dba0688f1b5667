"""What `--help` shows: a flag as itself, defaults as values, for every command."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from effnet.cli.app import app

COMMANDS = ("search", "grid-scale", "export-family", "export-model", "describe", "train", "proxy-check")


def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "240", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def option_line(text: str, flag: str) -> str:
    lines = [line for line in text.splitlines() if re.search(rf"│ {re.escape(flag)}\b", line)]
    assert len(lines) == 1, text
    return lines[0]


def test_search_help_shows_flags_bare_and_defaults_as_values():
    text = help_text("search")
    for flag in ("--json", "--help"):
        assert re.search(rf"│ {flag} +Print|│ {flag} +Show", option_line(text, flag)), option_line(text, flag)
    assert "<int>" in option_line(text, "--trials")  # an option that takes a value still names its type
    assert "default: 3" in option_line(text, "--proxy-epochs")
    assert "[default: 30]" in option_line(text, "--trials")
    assert "<bool>" not in text and "default: (" not in text


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_no_command_shows_a_flag_with_a_value_or_a_default_in_parentheses(command):
    text = help_text(*([command] if command else []))
    assert "<bool>" not in text and "default: (" not in text
