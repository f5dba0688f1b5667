"""The bad-input corpus (tests/bad_inputs/cases.yaml), each case as its own `effnet` process: exit code, wall
time and peak memory until the error.

    python bench/bench_bad_inputs.py [--markdown]

Prints one row per case and the totals: cases tried, refused with exit 2, accepted with exit 0 as they must
be, and the slowest and largest case. Exits 1 if a case ends with another exit code than its own, or takes
10 s or 2 GB or more.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_bad_inputs import CASE_SECONDS, CASES, measure  # noqa: E402  (the corpus and how the tests run it)

LIMIT_BYTES = 2 * 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    options = parser.parse_args()
    table = Table(title="bad-input corpus, one process per case")
    for column in ("case", "command", "exit", "expected", "seconds", "peak MiB"):
        table.add_column(column, justify="left" if column in ("case", "command") else "right")
    rows, wrong = [], []
    for case in CASES:
        expected = case.get("exit", 2)
        with tempfile.TemporaryDirectory() as folder:
            measured = measure(case, Path(folder))
        rows.append((case, measured))
        if measured.exit_code != expected or measured.seconds >= CASE_SECONDS or measured.peak_bytes >= LIMIT_BYTES:
            wrong.append(case["id"])
        table.add_row(
            case["id"],
            case["run"],
            str(measured.exit_code),
            str(expected),
            f"{measured.seconds:.2f}",
            f"{measured.peak_bytes / 2**20:.0f}",
        )
    refused = sum(m.exit_code == 2 == c.get("exit", 2) for c, m in rows)
    accepted = sum(m.exit_code == 0 == c.get("exit", 2) for c, m in rows)
    slowest = max(rows, key=lambda row: row[1].seconds)
    largest = max(rows, key=lambda row: row[1].peak_bytes)
    summary = (
        f"tried {len(rows)}: exit 2 as expected {refused}, exit 0 as expected {accepted}; slowest "
        f"{slowest[0]['id']} {slowest[1].seconds:.2f} s, largest {largest[0]['id']} "
        f"{largest[1].peak_bytes / 2**20:.0f} MiB; wrong: {', '.join(wrong) or 'none'}"
    )
    if options.markdown:
        print("| case | command | exit | expected | seconds | peak MiB |\n|---|---|---:|---:|---:|---:|")
        for case, m in rows:
            print(
                f"| {case['id']} | {case['run']} | {m.exit_code} | {case.get('exit', 2)} | {m.seconds:.2f} | "
                f"{m.peak_bytes / 2**20:.0f} |"
            )
        print(f"\n{summary}")
    else:
        console = Console()
        console.print(table)
        console.print(summary)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
