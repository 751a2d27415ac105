#!/usr/bin/env python3
"""Run every test alone, each in a process where no other test has run; list the failures.

A test that passes in the suite but fails here depends on what ran before it. To keep this
affordable (about 800 tests), a parent process imports the heavy libraries once (torch,
xarray, dask, zarr, the package itself) without computing anything, then forks a child per
test: the child starts from that state and runs ``pytest <test id>`` alone; no test module,
fixture, cache, option or random state of another test exists in it. Two children run at a
time. Linux/macOS only (fork).

Usage: ``.venv/bin/python .ci/each_test_alone.py [pytest selection ...]`` (default: all).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collect(selection: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *selection],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line for line in out.stdout.splitlines() if "::" in line]


def _child(test_id: str, log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import pytest

    code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", test_id])
    sys.stdout.flush()
    os._exit(int(code))


def main() -> int:
    ids = _collect(sys.argv[1:])
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT / "tests"))
    import dask.array  # noqa: F401  (imported once, before forking; nothing computed)
    import torch  # noqa: F401
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    import xcorrdiff.inference.api
    import xcorrdiff.train  # noqa: F401

    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"each-test-alone-{os.getpid()}"
    logs.mkdir()
    running: dict[int, tuple[str, Path]] = {}
    failures: list[str] = []
    start = time.monotonic()
    pending = list(enumerate(ids))
    while pending or running:
        while pending and len(running) < 2:
            index, test_id = pending.pop(0)
            log = logs / f"{index:05d}.log"
            pid = os.fork()
            if pid == 0:
                _child(test_id, log)
            running[pid] = (test_id, log)
        pid, status = os.wait()
        test_id, log = running.pop(pid)
        if os.waitstatus_to_exitcode(status) != 0:
            failures.append(test_id)
            print(f"FAIL {test_id} (log: {log})", flush=True)
    minutes = (time.monotonic() - start) / 60
    print(f"{len(ids)} tests, each alone, in {minutes:.1f} min: {len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
