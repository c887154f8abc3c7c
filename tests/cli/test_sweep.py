"""``expmate sweep``: real child processes, a failing run, --parallel, Ctrl-C, bad input."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from expmate import cli
from tests.ddp_launch import worker_env
from tests.helpers import read_csv, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "cli" / "workers" / "sweep_child.py"
TEMPLATE = f"{shlex.quote(sys.executable)} {shlex.quote(str(CHILD))} {{overrides}}"


def _index(sweep_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    return record


def _overlap(runs: list[dict[str, Any]]) -> int:
    """The largest number of runs whose [start, end] intervals overlap at one instant."""
    edges = sorted([(r["start_time"], 1) for r in runs] + [(r["end_time"], -1) for r in runs])
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


@pytest.fixture
def child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children import expmate from this checkout."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_sweep_runs_the_grid_records_a_failure_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], child_env: None
) -> None:
    """Four runs, two at a time; the failing one is recorded, the others finish; exit status 1."""
    sweep_dir = tmp_path / "sweep"
    argv = ["sweep", TEMPLATE, "-p", "training.lr=0.001,0.01", "-p", "model.width=64,128"]
    code = cli.main([*argv, "-p", "sleep=0.3", "--parallel", "2", "-o", str(sweep_dir)])
    assert code == 1
    record = _index(sweep_dir)
    runs = record["runs"]
    ids = ["000_lr0.001_width64_sleep0.3", "001_lr0.001_width128_sleep0.3",
           "002_lr0.01_width64_sleep0.3", "003_lr0.01_width128_sleep0.3"]  # fmt: skip
    grid = [("0.001", "64"), ("0.001", "128"), ("0.01", "64"), ("0.01", "128")]
    assert [
        (r["index"], r["run_id"], r["run_dir"], r["overrides"], r["command"], r["status"], r["exit_code"])
        for r in runs
    ] == [
        (
            i,
            ids[i],
            str(sweep_dir / ids[i]),
            [f"training.lr={lr}", f"model.width={width}", "sleep=0.3"],
            [sys.executable, str(CHILD), f"training.lr={lr}", f"model.width={width}", "sleep=0.3",
             f"run_id={ids[i]}", f"+run_dir={sweep_dir / ids[i]}"],
            "failed" if i == 2 else "finished",
            1 if i == 2 else 0,
        )
        for i, (lr, width) in enumerate(grid)
    ]  # fmt: skip
    assert runs[2]["last_line"] == "ValueError: diverged at lr=0.01"
    assert {k: record[k] for k in ("format", "command", "parameters", "sweep_dir", "parallel", "status")} == {
        "format": 1,
        "command": TEMPLATE,
        "parameters": {"training.lr": ["0.001", "0.01"], "model.width": ["64", "128"], "sleep": ["0.3"]},
        "sweep_dir": str(sweep_dir),
        "parallel": 2,
        "status": "failed",
    }  # fmt: skip
    assert record["start_time"] <= runs[0]["start_time"] < runs[0]["end_time"] <= record["end_time"]
    assert _overlap(runs) == 2
    for i in (0, 1, 3):
        lr, width = grid[i]
        rows = read_csv(sweep_dir / ids[i] / "metrics.csv")
        assert [row[:4] for row in rows[1:]] == [["0", "val", "loss", repr(float(lr) * int(width))]]
        config = (sweep_dir / ids[i] / "config.yaml").read_text(encoding="utf-8")
        assert f"run_id: {ids[i]}\n" in config
        assert f"  lr: {lr}\n" in config
    out, err = capsys.readouterr()
    assert f"[{ids[2]}] ValueError: diverged at lr=0.01\n" in out
    assert f"[{ids[3]}] " in out and "lr=0.01 width=128 mode=train\n" in out
    assert err.splitlines()[-3:] == [
        f"sweep: 4 runs in {sweep_dir}: 3 finished, 1 failed",
        f"sweep: failed: {ids[2]}",
        f"sweep: compare them: expmate compare {sweep_dir}/*",
    ]
    # `expmate compare SWEEP_DIR/*` as a shell expands it (sweep.json included) ranks the runs;
    # run_dir, different in every run, is no config difference.
    every = sorted(str(p) for p in sweep_dir.iterdir())
    assert cli.main(["compare", *every, "--sort", "val/loss", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["status"], r.get("val/loss.best")) for r in table] == [
        (ids[0], "finished", 0.064),
        (ids[1], "finished", 0.128),
        (ids[3], "finished", 1.28),
        (ids[2], "failed", None),
    ]
    assert "run_dir" not in table[0]


def test_sweep_exit_0_and_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every run finished: exit 0. The child sees its ids in the environment; a run that
    writes no run directory is pointed at config.run_dir."""
    code = (
        "import os; print(os.environ['EXPMATE_RUN_ID'], os.environ['EXPMATE_RUN_DIR'],"
        " os.environ['EXPMATE_SWEEP_DIR'])"
    )
    template = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {{overrides}}"
    sweep_dir = tmp_path / "s"
    assert cli.main(["sweep", template, "-p", "seed=1", "-o", str(sweep_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == f"[000_seed1] 000_seed1 {sweep_dir / '000_seed1'} {sweep_dir}\n"
    assert (
        f"sweep: 000_seed1 wrote no run directory at {sweep_dir / '000_seed1'}: open the logger "
        "with ExperimentLogger(run_dir=config.run_dir)\n"
    ) in err
    assert _index(sweep_dir)["status"] == "finished"


def test_sweep_dry_run_prints_commands_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints each command line, shell-quoted, and creates nothing."""
    code = cli.main(
        ["sweep", "python train.py {overrides}", "-p", "layers=[1, 2],[3]", "-p", "seed=0",
         "-o", str(tmp_path / "s"), "--dry-run"]
    )  # fmt: skip
    assert code == 0
    s = tmp_path / "s"
    assert capsys.readouterr().out == (
        f"python train.py 'layers=[1, 2]' seed=0 run_id=000_layers-1-2_seed0 +run_dir={s}/000_layers-1-2_seed0\n"
        f"python train.py 'layers=[3]' seed=0 run_id=001_layers-3_seed0 +run_dir={s}/001_layers-3_seed0\n"
    )  # fmt: skip
    assert not s.exists()


def test_sweep_records_a_command_that_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing executable fails that run (with the error recorded); the sweep goes on."""
    missing = tmp_path / "no-such-program"
    assert (
        cli.main(["sweep", f"{missing} {{overrides}}", "-p", "a=1,2", "-o", str(tmp_path / "s")])
        == 1
    )
    runs = _index(tmp_path / "s")["runs"]
    assert [(r["status"], r["exit_code"], r["error"]) for r in runs] == [
        ("failed", None, f"[Errno 2] No such file or directory: '{missing}'")
    ] * 2
    assert (
        "sweep: 000_a1 failed to start: [Errno 2] No such file or directory"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["python t.py", "-p", "a=1"], "the command 'python t.py' has no {overrides} word"),
        (["python t.py {overrides}", "-p", "a"], "a parameter is written key=value1,value2,..., not 'a'"),
        (["python t.py {overrides}", "-p", "a=1", "-p", "a=2"], "parameter 'a' is given twice"),
        (["python t.py {overrides}", "-p", "a=1", "--parallel", "0"], "--parallel must be at least 1, not 0"),
        (["python t.py {overrides}", "-p", "a=[1"], "unbalanced bracket in '[1'"),
    ],
)  # fmt: skip
def test_sweep_usage_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad templates and parameters: one line on stderr, exit 2, nothing written."""
    assert cli.main(["sweep", *args, "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"expmate sweep: {message}") and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_sweep_refuses_a_directory_that_holds_a_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second sweep into the same directory is refused; the first sweep.json is untouched."""
    (tmp_path / "sweep.json").write_text("{}\n")
    assert cli.main(["sweep", "python t.py {overrides}", "-p", "a=1", "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"expmate sweep: {tmp_path} already holds a sweep ({tmp_path / 'sweep.json'}); "
        "choose another -o DIR\n"
    )
    assert (tmp_path / "sweep.json").read_text() == "{}\n"


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    assert wait_until(predicate, timeout), f"timed out waiting for {what}"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_ctrl_c_stops_the_children_and_records_them(tmp_path: Path) -> None:
    """SIGINT to the sweep reaches each child's process group; a child that ignores it is killed
    at the second Ctrl-C; runs not started are cancelled; exit status 130, no traceback."""
    sweep_dir = tmp_path / "s"
    argv = [sys.executable, "-m", "expmate", "sweep", TEMPLATE, "-p", "mode=wait,stubborn,wait",
            "--parallel", "2", "-o", str(sweep_dir)]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    ready = [sweep_dir / "000_modewait" / "ready", sweep_dir / "001_modestubborn" / "ready"]
    try:
        _wait_for(lambda: all(p.exists() and p.read_text() for p in ready), 60, "two children")
        waiting, stubborn = (int(p.read_text()) for p in ready)
        proc.send_signal(signal.SIGINT)
        _wait_for(lambda: _gone(waiting), 30, "the waiting child to stop")
        assert not _gone(stubborn)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130
    assert _gone(stubborn)
    record = _index(sweep_dir)
    assert record["status"] == "interrupted"
    assert [(r["status"], r["exit_code"], r.get("signal")) for r in record["runs"]] == [
        ("interrupted", -signal.SIGINT, "SIGINT"),
        ("interrupted", -signal.SIGKILL, "SIGINT"),
        ("cancelled", None, None),
    ]
    assert "[000_modewait] KeyboardInterrupt\n" in out
    assert "Traceback" not in err
    assert err.splitlines()[-2:] == [
        f"sweep: 3 runs in {sweep_dir}: 2 interrupted, 1 cancelled",
        f"sweep: compare them: expmate compare {sweep_dir}/*",
    ]
