"""What a refused command prints: one `error:` line on stderr and exit code 2; on stdout nothing, or under
`--json` the same error as one JSON object (`{"error": ..., "exit_code": 2}`), so that a script's stdout parses."""

from __future__ import annotations

import json
from typing import Any


def refusal_stdout_is_right(result: Any) -> None:
    """stdout of a refused command: empty, or exactly the JSON object of its one stderr line."""
    if result.stdout:
        line = result.stderr.strip().splitlines()[-1]
        assert json.loads(result.stdout) == {"error": line.removeprefix("error: "), "exit_code": 2}, result.stdout
