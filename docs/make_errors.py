"""Render docs/errors.md from the messages the catalogue tests saw.

Usage (from the repository root)::

    rm -f /tmp/errors.jsonl
    XCORRDIFF_ERRORS_TABLE=/tmp/errors.jsonl .venv/bin/python -m pytest -p no:randomly \\
        tests/test_errors_catalogue.py tests/test_cli_contract.py -k "catalogue or misuse"
    .venv/bin/python docs/make_errors.py /tmp/errors.jsonl > docs/errors.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

HEADER = """# Errors: the catalogue of bad input

xcorrdiff checks what it is given before it computes or writes anything, and says in one
message what it received, what it expected and how to fix it. This page lists every class
of bad input the test suite holds, with the message the test saw and the test that holds
it. Every test below also checks that **nothing was written to disk**: each runs in a
fresh folder whose files (sizes and modification times) must be the same afterwards.

Conventions:

- Python errors are `ValueError` (a bad value), `TypeError` (a value of the wrong type),
  `KeyError` (a missing variable), `FileNotFoundError` / `FileExistsError` (paths),
  `MemoryError` (a request larger than the machine; the message gives the estimate and the
  argument to change) and the training errors `NonFiniteError` / `CheckpointMismatchError`.
- The command line prints one line, `xcorrdiff <command>: error: <message>`, and exits with
  status 2 for a misuse, 1 for a failure of the environment (a read-only or full disk, a
  missing permission: `tests/test_cli_contract.py::test_a_read_only_location_is_exit_1_naming_it`,
  `::test_a_full_disk_is_exit_1_and_keeps_a_resumable_store`).
- Long paths in the messages below are shortened to `…/`.

This page is generated: see `docs/make_errors.py` for the command.
"""


def _short(message: str) -> str:
    import re

    text = re.sub(r"/tmp/\S*?/work/", "…/", message)
    text = re.sub(r"'/tmp/[^']*/", "'…/", text)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 400 else text[:397] + "..."


def main(path: str) -> None:
    from test_cli_contract import BAD_INPUTS, MISUSES
    from test_errors_catalogue import CASES

    records = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        records[record["id"]] = record
    sections = [
        ("Python API", [(c[0], c[1]) for c in CASES]),
        (
            "Command line (`xcorrdiff downscale`)",
            [(f"cli-{m[0]}", "`" + " ".join(m[1]) + "`") for m in MISUSES]
            + [(f"cli-{b[0]}", f"INPUT `{b[1]}`") for b in BAD_INPUTS],
        ),
    ]
    out = [HEADER]
    number = 0
    for title, rows in sections:
        out.append(f"\n## {title}\n\n| id | bad input | error | test |\n|---|---|---|---|")
        for case_id, what in rows:
            record = records[case_id]
            number += 1
            out.append(
                f"| `{case_id}` | {what} | {record['error']}: {_short(record['message'])} | "
                f"`{record['test']}` |"
            )
    out.append(f"\n{number} classes of bad input in all.\n")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
