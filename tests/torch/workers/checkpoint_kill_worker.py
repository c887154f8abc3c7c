"""Worker for tests/torch/test_checkpoint_kill.py: SIGKILL a process at random moments while it
saves checkpoints, then check that a complete checkpoint always loads.

Usage: checkpoint_kill_worker.py RUN_DIR RUNS SEED. torch is imported once; every run is a
forked child that resumes from the newest checkpoint and saves one checkpoint after another
(1 MB each) until it is killed at a random moment of its third save cycle (the second one
measures how long a cycle takes here; fsync times vary a lot on a shared disk). After each kill a second forked child checks the
directory. Writes ``RUN_DIR/summary.json``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from expmate import ExperimentLogger
from expmate.torch import CheckpointManager


def model() -> torch.nn.Module:
    return torch.nn.Linear(512, 512)


def saver(run_dir: Path) -> None:
    """Resume, then save step after step until killed; the weights of step s all equal s."""
    logger = ExperimentLogger(run_dir, console_output=False)
    manager = CheckpointManager(logger=logger, monitor="val/loss", keep_last=2)
    net = model()
    last = manager.resume(net)
    step = 0 if last is None else last + 1
    for done in range(1, 1 << 30):
        started = time.monotonic()
        with torch.no_grad():
            for param in net.parameters():
                param.fill_(float(step))
        logger.log_metric(step, "val", "loss", 1.0 / (step + 1))
        manager.save(step, model=net, extra={"step": step})
        if done == 2:
            (run_dir / "cycle").write_text(str(time.monotonic() - started))
        step += 1


def leftovers(directory: Path) -> dict[str, Any]:
    """What a kill left in the checkpoint directory, seen before anything touches it."""
    if not directory.exists():
        return {"temp_checkpoint": False, "temp_manifest": False, "temp_files": 0, "unlisted": []}
    present = sorted(p.name for p in directory.iterdir())
    try:
        listed = {
            c["file"]
            for c in json.loads((directory / "checkpoints.json").read_text())["checkpoints"]
        }
    except FileNotFoundError:
        listed = set()
    return {
        "temp_checkpoint": any(n.startswith(".step_") for n in present),
        "temp_manifest": any(n.startswith(".checkpoints.json.") for n in present),
        "temp_files": sum(n.endswith(".tmp") for n in present),
        "unlisted": [n for n in present if n.endswith(".pt") and n not in listed],
    }


def check(run_dir: Path, out: Path) -> None:
    """Load the newest checkpoint with a fresh manager; record what was found."""
    directory = run_dir / "checkpoints"
    found = leftovers(directory)
    logger = ExperimentLogger(run_dir / "check", console_output=False)
    manager = CheckpointManager(directory, logger=logger, monitor="val/loss", keep_last=2)
    data = manager.load_latest()
    found["latest_step"] = manager.latest_step
    if data is not None:
        weights = torch.cat([t.flatten() for t in data["model"].values()])
        found["loaded_step"] = data["step"]
        found["weights_match"] = bool((weights == float(data["step"])).all())
        found["extra_match"] = data["extra"] == {"step": data["step"]}
    manager.close()
    logger.flush()
    events = (logger.run_dir / "events.jsonl").read_text().splitlines()
    found["corrupt_events"] = sum('"checkpoint": "corrupt"' in line for line in events)
    logger.close()
    out.write_text(json.dumps(found))


def in_child(target: Any, *args: Any) -> int:
    """Run ``target(*args)`` in a forked child; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            target(*args)
        except BaseException:  # noqa: BLE001 - report, then leave without the parent's cleanup
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def main() -> None:
    run_dir, runs, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    chance = random.Random(seed)
    results = []
    for run in range(runs):
        cycle = run_dir / "cycle"
        cycle.unlink(missing_ok=True)
        pid = in_child(saver, run_dir)
        while not cycle.exists():  # two save cycles done: the next is the one to cut
            time.sleep(0.002)
        delay = chance.uniform(0.0, float(cycle.read_text() or 0.01))
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        out = run_dir / f"check_{run}.json"
        checker = in_child(check, run_dir, out)
        _, code = os.waitpid(checker, 0)
        result = json.loads(out.read_text()) if code == 0 else {"checker_failed": code}
        results.append({"run": run, "delay": delay, "killed": os.WIFSIGNALED(status), **result})
    (run_dir / "summary.json").write_text(json.dumps({"seed": seed, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
