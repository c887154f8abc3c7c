"""The public surface of `import expmate`: exported names, and no torch at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import expmate

ROOT = Path(__file__).resolve().parents[1]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the repository importable."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_all_is_pinned() -> None:
    """expmate.__all__ holds exactly the documented names, sorted."""
    assert expmate.__all__ == [
        "Config",
        "ConfigError",
        "ExperimentLogger",
        "RunDirInUseError",
        "__version__",
        "capture_git",
        "load_run",
        "load_runs",
        "log_level",
        "parse_config",
        "runs_table",
        "timer",
        "track_metrics",
        "verbose",
    ]


def test_every_exported_name_exists() -> None:
    """Each name of __all__ is an attribute of the package."""
    assert [name for name in expmate.__all__ if not hasattr(expmate, name)] == []


def test_import_does_not_import_torch() -> None:
    """`import expmate` in a fresh interpreter leaves torch (and numpy) unimported."""
    code = "import sys, expmate; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    result = _run_python(code)
    assert result.stdout == "[]\n"


def test_logging_does_not_import_torch() -> None:
    """Creating a logger and logging messages and float metrics needs no torch either."""
    code = (
        "import sys, tempfile, expmate\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    with expmate.ExperimentLogger(run_dir=d, console_output=False) as lg:\n"
        "        lg.info('x')\n"
        "        lg.log_metric(step=0, split='val', name='loss', value=0.5)\n"
        "        with lg.stage('s'), lg.timer('t'), lg.log_every(every=2):\n"
        "            pass\n"
        "print('torch' in sys.modules)\n"
    )
    result = _run_python(code)
    assert result.stdout == "False\n"
