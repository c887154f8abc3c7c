"""Worker for tests/test_ddp_launch.py: every rank records its pid, then hangs forever.

Usage: hang_worker.py PID_DIR. Rank r writes ``PID_DIR/rank{r}.pid`` and sleeps; nothing ever
ends it but a kill (as a rank stuck in a collective would be).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> None:
    pid_dir = Path(sys.argv[1])
    rank = os.environ.get("RANK", "0")
    (pid_dir / f"rank{rank}.pid").write_text(str(os.getpid()))
    # One write of the whole line: the ranks share the pipe, and with PYTHONUNBUFFERED print()
    # writes the text and its newline apart, so two ranks' lines could interleave.
    os.write(1, f"rank {rank} hangs\n".encode())
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
