"""expmate.stop_signals and the agreed stop in one process: signals that ask to stop, not kill."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from expmate import ExperimentLogger, run_end, stop_signals
from tests.helpers import lines_of, wait_until


@pytest.fixture(autouse=True)
def _forget_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal noted by a test must not make later runs look interrupted."""
    monkeypatch.setattr(run_end, "_signal", None)


def quiet_logger(run_dir: Path, **kwargs: Any) -> ExperimentLogger:
    return ExperimentLogger(run_dir=run_dir, console_output=False, **kwargs)


def test_signals_of() -> None:
    """True means SIGTERM and SIGUSR1; names and numbers are accepted, duplicates dropped."""
    assert stop_signals.signals_of(True) == (signal.SIGTERM, signal.SIGUSR1)
    assert stop_signals.signals_of(False) == stop_signals.signals_of(None) == ()
    assert stop_signals.signals_of(["SIGUSR2", int(signal.SIGTERM), "SIGUSR2"]) == (
        signal.SIGUSR2,
        signal.SIGTERM,
    )


@pytest.mark.parametrize(
    ("spec", "error", "named"),
    [
        ("SIGTERM", TypeError, "'SIGTERM'"),
        (["SIGNOPE"], ValueError, "'SIGNOPE'"),
        ([99999], ValueError, "99999"),
        (["SIGKILL"], ValueError, "SIGKILL cannot be caught"),
    ],
)
def test_bad_stop_signals_are_named_and_write_nothing(
    tmp_path: Path, spec: Any, error: type, named: str
) -> None:
    """A bad stop_signals raises at construction, naming it, before the run directory exists."""
    with pytest.raises(error, match=named):
        quiet_logger(tmp_path / "run", stop_signals=spec)
    assert not (tmp_path / "run").exists()


def test_request_stop_in_one_process_is_agreed_at_once(tmp_path: Path) -> None:
    """One process has nobody to agree with: should_stop() is True right after the request."""
    logger = quiet_logger(tmp_path)
    assert logger.should_stop() is False
    logger.request_stop()
    assert logger.should_stop() is True
    logger.close()


def test_sigusr1_requests_the_stop_flushes_and_keeps_running(tmp_path: Path) -> None:
    """With stop_signals on, SIGUSR1 notes the signal, asks to stop and flushes the files;
    the process lives on, and closing puts the previous handler back."""
    before = signal.getsignal(signal.SIGUSR1)
    logger = quiet_logger(tmp_path, stop_signals=True, flush_interval=3600)
    logger.info("before the signal")
    logger.log_metric(0, "val", "loss", 0.5)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert logger.should_stop() is True
    assert run_end.noted_signal() == "SIGUSR1"
    assert wait_until(lambda: (tmp_path / "metrics.csv").exists())
    assert wait_until(lambda: len(lines_of(tmp_path / "exp.log")) == 1)
    assert lines_of(tmp_path / "exp.log")[0].endswith(" - INFO - before the signal")
    logger.info("after the signal")
    logger.close()
    assert signal.getsignal(signal.SIGUSR1) == before
    assert len(lines_of(tmp_path / "exp.log")) == 2


def test_sigterm_is_a_stop_request_until_the_logger_closes(tmp_path: Path) -> None:
    """SIGTERM stops nothing while stop signals are on; afterwards the flush-and-exit handler
    of expmate.flushing is back in place."""
    plain = quiet_logger(tmp_path / "plain")  # the first logger installs flushing's handler
    flushing_handler = signal.getsignal(signal.SIGTERM)
    logger = quiet_logger(tmp_path / "stop", stop_signals=["SIGTERM"])
    assert signal.getsignal(signal.SIGTERM) is not flushing_handler
    os.kill(os.getpid(), signal.SIGTERM)
    assert logger.should_stop() and run_end.noted_signal() == "SIGTERM"
    assert plain.should_stop() is False  # only loggers that asked for the signal
    logger.close()
    assert signal.getsignal(signal.SIGTERM) is flushing_handler
    plain.close()


def test_two_loggers_share_the_handler_until_both_close(tmp_path: Path) -> None:
    """The handler stays while any logger wants the signal; both loggers see the request."""
    before = signal.getsignal(signal.SIGUSR2)
    first = quiet_logger(tmp_path / "a", stop_signals=["SIGUSR2"])
    second = quiet_logger(tmp_path / "b", stop_signals=["SIGUSR2"])
    first.close()
    assert signal.getsignal(signal.SIGUSR2) is not before
    os.kill(os.getpid(), signal.SIGUSR2)
    assert second.should_stop() and not first.should_stop()
    second.close()
    assert signal.getsignal(signal.SIGUSR2) == before


def test_stop_signals_need_the_main_thread(tmp_path: Path) -> None:
    """Off the main thread no handler can be installed: a RuntimeError, nothing written."""
    caught: list[BaseException] = []

    def build() -> None:
        try:
            quiet_logger(tmp_path / "run", stop_signals=True)
        except RuntimeError as exc:
            caught.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join(10)
    assert len(caught) == 1 and "main thread" in str(caught[0])
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_the_previous_handler_back(tmp_path: Path) -> None:
    """A data-loader worker forked while stop signals are on must still die of SIGTERM."""
    logger = quiet_logger(tmp_path, stop_signals=True)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether the stop handler is still installed, then exit
        mine = signal.getsignal(signal.SIGTERM) is stop_signals._on_signal
        os.write(write, b"stop" if mine else b"previous")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    logger.close()
    assert answer == b"previous"


def test_sync_every_is_validated(tmp_path: Path) -> None:
    """sync_every must be a positive int: a ValueError naming it, nothing written."""
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match=f"sync_every .* not {bad!r}"):
            quiet_logger(tmp_path / "run", sync_every=bad)
    assert not (tmp_path / "run").exists()
