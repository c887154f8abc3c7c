"""``python -m expmate``: the ``expmate`` command."""

from __future__ import annotations

import sys

from expmate.cli import main

if __name__ == "__main__":
    sys.exit(main())
