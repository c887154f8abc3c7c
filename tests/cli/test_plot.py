"""expmate plot: PNG/SVG/PDF files from matplotlib, a terminal plot from plotext, --follow,
smoothing, time axis, and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from expmate.cli.plot import panels, smooth
from expmate.runs import load_run
from tests.cli.conftest import expmate


def test_png_file(runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A PNG with two panels is written (non-empty, PNG signature) from two runs."""
    target = tmp_path / "loss.png"
    code, out, err = expmate(
        capsys,
        "plot",
        str(runs_dir / "lr_0.1"),
        str(runs_dir / "lr_0.01"),
        "-m", "loss", "-m", "val/accuracy", "--smooth", "0.6", "-o", str(target),
    )  # fmt: skip
    assert (code, out, err) == (0, f"wrote {target}\n", "")
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_svg_and_pdf(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str, magic: bytes
) -> None:
    """The extension picks the format; --x time plots against time since the start."""
    target = tmp_path / f"loss{suffix}"
    code, _, _ = expmate(
        capsys, "plot", str(runs_dir / "lr_0.1"), "-m", "val/loss", "--x", "time", "-o", str(target)
    )
    assert code == 0 and target.read_bytes().startswith(magic)


def test_time_axis_starts_at_the_run_start(runs_dir: Path) -> None:
    """--x time: seconds since the run's start, in a unit that suits the span."""
    run = load_run(runs_dir / "lr_0.1")
    (panel,), label = panels([run], ["val/loss"], x="time")
    walls, values = run.metric("val", "loss", x="time")
    start = run.start_time
    assert label == "time since start (s)" and start is not None
    assert panel.lines[0].x == [t - start for t in walls] and panel.lines[0].y == values
    assert all(0 <= x < 60 for x in panel.lines[0].x)


def test_terminal_plot(
    runs_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without -o a plot is drawn as text, with the panel title, legend and axis label."""
    monkeypatch.setenv("COLUMNS", "90")
    monkeypatch.setenv("LINES", "24")
    code, out, err = expmate(
        capsys, "plot", str(runs_dir / "lr_0.1"), str(runs_dir / "lr_0.01"), "-m", "val/loss"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].strip() == "val/loss"
    assert "lr_0.1" in out and "lr_0.01" in out and lines[-1].strip() == "step"
    assert max(len(line) for line in lines) <= 90 and "\x1b[" not in out


def test_follow_stops_when_no_run_is_running(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--follow on finished runs draws once (clearing the screen first) and exits 0."""
    code, out, _ = expmate(capsys, "plot", str(runs_dir / "lr_0.1"), "-m", "train/loss", "--follow")
    assert code == 0 and out.startswith("\x1b[H\x1b[2J") and out.count("train/loss") == 1


def test_smoothing_is_a_debiased_moving_average() -> None:
    """The first value is kept; NaN passes through and does not enter the average."""
    first, skipped, third = smooth([2.0, float("nan"), 0.0], 0.5)
    assert first == 2.0 and skipped != skipped and third == 2.0 / 3
    assert smooth([1.0, 0.0, 0.0], 0.5) == [1.0, 1 / 3, 1 / 7]
    assert smooth([3.0, 1.0], 0.0) == [3.0, 1.0]


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["-m", "val/los"], 1, "no run has metric 'val/los'; metrics: train/loss, val/accuracy, val/loss"),
        (["-m", "val/loss", "-o", "{tmp}/x.jpg"], 2, "-o takes a .png, .svg or .pdf file, not '{tmp}/x.jpg'"),
        (["-m", "val/loss", "-o", "{tmp}/x.png", "--follow"], 2, "--follow redraws the terminal plot; leave out -o"),
        (["-m", "val/loss", "-o", "{tmp}/no/such/dir/x.png"], 1, "cannot write '{tmp}/no/such/dir/x.png': No such file or directory"),
        (["-m", "val/"], 2, "a metric is SPLIT/NAME (val/loss) or NAME (loss), not 'val/'"),
    ],
)  # fmt: skip
def test_bad_input(
    runs_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    message: str,
) -> None:
    """Unknown metrics, formats and paths: one line, exit 1 or 2."""
    argv = [a.format(tmp=tmp_path) for a in extra]
    got = expmate(capsys, "plot", str(runs_dir / "lr_0.1"), *argv)
    assert got == (code, "", f"expmate plot: {message.format(tmp=tmp_path)}\n")


def test_smooth_out_of_range_is_a_usage_error(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--smooth 1.5 is rejected by the parser (exit 2)."""
    code, _, err = expmate(capsys, "plot", str(runs_dir), "-m", "val/loss", "--smooth", "1.5")
    assert code == 2 and "must be a number in [0, 1), not '1.5'" in err


def test_missing_extra_names_the_pip_install(
    runs_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without matplotlib (or plotext) the message names expmate[plot]; exit 1."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "plotext", None)
    run = str(runs_dir / "lr_0.1")
    assert expmate(capsys, "plot", run, "-m", "val/loss", "-o", str(tmp_path / "a.png")) == (
        1,
        "",
        'expmate plot: a plot file needs matplotlib, which is not installed: pip install "expmate[plot]"\n',
    )
    assert expmate(capsys, "plot", run, "-m", "val/loss") == (
        1,
        "",
        'expmate plot: a terminal plot needs plotext, which is not installed: pip install "expmate[plot]"\n',
    )


def test_follow_redraws_a_live_run_until_it_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--follow waits for a live run's first values, redraws as rows arrive, and stops once
    the run has ended."""
    from expmate import ExperimentLogger
    from expmate.cli import plot

    logger = ExperimentLogger(tmp_path / "live", console_output=False, flush_interval=1000)
    logger.flush()  # summary.json says running; no metric yet
    frames: list[int] = []

    def tick(seconds: float) -> None:  # each pause of the loop: the run moves on
        frames.append(len(frames))
        if len(frames) < 3:
            logger.log_metric(len(frames), "val", "loss", 1.0 / len(frames))
            logger.flush()
        else:
            logger.close()

    monkeypatch.setattr(plot.time, "sleep", tick)
    code, out, _ = expmate(capsys, "plot", str(tmp_path / "live"), "-m", "val/loss", "--follow")
    draws = out.split("\x1b[H\x1b[2J")[1:]
    assert code == 0 and len(draws) == 4 and frames == [0, 1, 2]
    assert draws[0].startswith("waiting for the first values (no run has metric 'val/loss'")
    assert all(d.splitlines()[0].strip() == "val/loss" for d in draws[1:])


def test_smoothing_spans_the_same_x_for_sparse_lines() -> None:
    """With x, a gap of two units weighs as two steps of the average."""
    assert smooth([1.0, 0.0], 0.5, [0.0, 2.0], 1.0) == [1.0, 1 / 7]
    assert smooth([1.0, 0.0], 0.5, [0.0, 100.0], 100.0) == [1.0, 1 / 3]


def test_a_cut_last_line_is_one_warning_line(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run being written (its metrics.csv ends in a partial line) plots, with one line on
    stderr and no traceback."""
    import shutil

    run = tmp_path / "live"
    shutil.copytree(runs_dir / "lr_0.1", run)
    with (run / "metrics.csv").open("a") as handle:
        handle.write("20,val,loss,0.1")
    code, out, err = expmate(capsys, "plot", str(run), "-m", "val/loss")
    assert code == 0 and out.splitlines()[0].strip() == "val/loss"
    assert err == (
        f"expmate plot: warning: {run / 'metrics.csv'}: its last line is cut short (the run is "
        "being written or was killed); 15 bytes skipped\n"
    )
