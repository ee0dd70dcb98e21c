"""The JSON-lines files resumable benchmarks keep their rows in: one record per line, appended as
each is done, read back whole by a rerun or a ``--report``."""

from __future__ import annotations

import json
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    """Every record in ``path`` (none if it does not exist yet); blank lines are skipped."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` as one line, creating the file and its folder on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(row) + "\n")
