"""The figures of docs/reliability.md at full size: the fault tests, run with the documented counts.

The test suite runs the same tests with smaller counts where the full run would be long
(2 elastic restart jobs instead of 10, 8 threads for 2 s instead of 10 s, 60 hypothesis examples
instead of 500); the 50 SIGKILLs and the 20 SIGTERM + 10 SIGINT runs are full size in both.
This script sets the full counts, runs the tests with their output shown, and prints one line per
figure with the 1-minute load average before and after. It is a report: it exits with pytest's
status, but times are never asserted beyond the bounds the tests themselves hold.

Usage::

    .venv/bin/python benchmarks/reliability_figures.py          # ~3 min on 2 cores
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL = {
    "EXPMATE_FIGURE_RESTARTS": "10",
    "EXPMATE_FIGURE_THREAD_SECONDS": "10",
    "EXPMATE_FIGURE_EXAMPLES": "500",
}
TESTS = ["tests/test_reliability.py", "tests/torch/test_elastic_restart.py"]


def main() -> int:
    env = {**os.environ, **FULL}
    before = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-q", "-rf", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    after = os.getloadavg()[0]
    figures = [
        line[line.index("FIGURE") :] for line in proc.stdout.splitlines() if "FIGURE" in line
    ]
    print(f"counts: {' '.join(f'{k}={v}' for k, v in FULL.items())}")
    print(f"load average (1 min): {before:.2f} before, {after:.2f} after; {took:.0f} s")
    for line in figures:
        print(line)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "reliability_figures.log"
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    for line in proc.stdout.splitlines():
        if line.startswith(("FAILED", "ERROR")):
            print(line)
    print(proc.stdout.splitlines()[-1] if proc.stdout else proc.stderr[-2000:])
    print(f"full output: {log}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
