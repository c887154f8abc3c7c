"""Time expmate's hot paths against the floor (a plain buffered write) and against peers.

Each measurement runs in a fresh interpreter (one per case and repetition, cases interleaved so
drift on a busy machine hits them alike): a warm-up of up to 10k calls on a throwaway instance,
then ``--calls`` timed calls on a new one, finishing with its flush/close. Prints a markdown table
of µs per call (median and min-max over the repetitions), peak RSS of the child, each ratio, its
target and PASS/MISS. Always exits 0: it is a report, not a test.

Usage:
    .venv/bin/python benchmarks/bench_core.py            # 5 x 100k calls per case
    .venv/bin/python benchmarks/bench_core.py --quick    # 3 x 20k calls, for a quick look
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path

from _timing import REPO_ROOT, Stats, machine_description, markdown_table, maxrss_kib, run_child

SCRIPT = Path(__file__).resolve()
MESSAGE = "epoch 3 step 1200: loss=0.4123 lr=3.0e-04"
WARMUP_CALLS = 10_000


Timing = tuple[float, float]  # (wall seconds, CPU seconds of the whole process)


def _now() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    """Wall and process CPU time since ``start``; CPU time shows what a loaded machine hides."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


def _losses(n: int) -> list[float]:
    """A loss that improves (strictly decreases) at every step."""
    return [1.0 / (step + 1) for step in range(n)]


# ---------------------------------------------------------------------------------------- cases
# Each case sets up outside the clock, then returns the seconds taken by ``n`` calls plus the
# final flush/close that puts them on disk.


def floor_metric(workdir: Path, n: int) -> Timing:
    """The floor of log_metric: one buffered write of the same CSV line, formatted per call."""
    values = _losses(n)
    out = open(workdir / "floor.csv", "w", encoding="utf-8")  # noqa: SIM115 - closed on the clock
    gc.collect()
    start = _now()
    for step, value in enumerate(values):
        out.write(f"{step},train,loss,{value!r},{time.time():.3f}\n")
    out.close()
    return _since(start)


def _log_metric(workdir: Path, values: list) -> Timing:
    from expmate import ExperimentLogger

    logger = ExperimentLogger(run_dir=workdir / "run", console_output=False)
    gc.collect()
    start = _now()
    for step, value in enumerate(values):
        logger.log_metric(step, "train", "loss", value)
    logger.close()
    return _since(start)


def log_metric_float(workdir: Path, n: int) -> Timing:
    """``log_metric`` of a float, best tracking on, the loss improving at every step."""
    return _log_metric(workdir, _losses(n))


def log_metric_tensor(workdir: Path, n: int) -> Timing:
    """The same with 0-dim CPU float32 tensors (made before the clock starts)."""
    import torch

    return _log_metric(workdir, [torch.tensor(v) for v in _losses(n)])


def log_metric_nobest(workdir: Path, n: int) -> Timing:
    """``log_metric`` of a float with ``track_best=False`` (what best tracking costs)."""
    from expmate import ExperimentLogger

    values = _losses(n)
    logger = ExperimentLogger(run_dir=workdir / "run", console_output=False)
    gc.collect()
    start = _now()
    for step, value in enumerate(values):
        logger.log_metric(step, "train", "loss", value, track_best=False)
    logger.close()
    return _since(start)


def floor_info(workdir: Path, n: int) -> Timing:
    """The floor of info(): the exp.log line and the events.jsonl line, two buffered writes.

    The clock text is formatted once per second, as expmate does, so this floor is strict.
    """
    text_out = open(workdir / "exp.log", "w", encoding="utf-8")  # noqa: SIM115
    json_out = open(workdir / "events.jsonl", "w", encoding="utf-8")  # noqa: SIM115
    tail = ', "run_id": "run", "rank": 0}\n'
    message = MESSAGE
    second, clock = -1, ""
    gc.collect()
    start = _now()
    for _ in range(n):
        now = time.time()
        if int(now) != second:
            second = int(now)
            clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        text_out.write(f"{clock} - INFO - {message}\n")
        json_out.write(
            f'{{"timestamp": {now!r}, "level": "INFO", "message": {encode_basestring(message)}'
            f"{tail}"
        )
    text_out.close()
    json_out.close()
    return _since(start)


def info(workdir: Path, n: int) -> Timing:
    """``logger.info(message)`` with the console off: exp.log and events.jsonl."""
    from expmate import ExperimentLogger

    logger = ExperimentLogger(run_dir=workdir / "run", console_output=False)
    message = MESSAGE
    gc.collect()
    start = _now()
    for _ in range(n):
        logger.info(message)
    logger.close()
    return _since(start)


def stdlib_logging(workdir: Path, n: int) -> Timing:
    """stdlib ``logging`` with one FileHandler, format '%(asctime)s - %(levelname)s - %(message)s'."""
    import logging

    handler = logging.FileHandler(workdir / "stdlib.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    log = logging.getLogger(f"bench.{workdir.name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    message = MESSAGE
    gc.collect()
    start = _now()
    for _ in range(n):
        log.info(message)
    handler.close()
    elapsed = _since(start)
    log.removeHandler(handler)
    return elapsed


def lightning_csv(workdir: Path, n: int) -> Timing:
    """Lightning's ``CSVLogger.log_metrics({'train_loss': v}, step)``, then ``finalize``."""
    try:
        from lightning.pytorch.loggers import CSVLogger
    except ImportError:
        from pytorch_lightning.loggers import CSVLogger  # type: ignore[assignment]  # older name

    values = _losses(n)
    logger = CSVLogger(save_dir=str(workdir), name="lightning")
    gc.collect()
    start = _now()
    for step, value in enumerate(values):
        logger.log_metrics({"train_loss": value}, step=step)
    logger.finalize("success")
    return _since(start)


def tensorboard_scalar(workdir: Path, n: int) -> Timing:
    """TensorBoard's ``SummaryWriter.add_scalar('train/loss', v, step)`` (torch's), then close."""
    from torch.utils.tensorboard import SummaryWriter

    values = _losses(n)
    writer = SummaryWriter(log_dir=str(workdir / "tb"))
    gc.collect()
    start = _now()
    for step, value in enumerate(values):
        writer.add_scalar("train/loss", value, step)
    writer.close()
    return _since(start)


CASES: dict[str, tuple[str, Callable[[Path, int], Timing]]] = {
    "floor_metric": ("floor: `file.write` of the metrics.csv line", floor_metric),
    "log_metric": ("expmate `log_metric` (float, best on, improving)", log_metric_float),
    "log_metric_tensor": ("expmate `log_metric` (0-dim CPU tensor)", log_metric_tensor),
    "log_metric_nobest": ("expmate `log_metric` (float, `track_best=False`)", log_metric_nobest),
    "lightning_csv": ("Lightning `CSVLogger.log_metrics`", lightning_csv),
    "tensorboard": ("TensorBoard `SummaryWriter.add_scalar`", tensorboard_scalar),
    "floor_info": ("floor: `file.write` of the exp.log + events.jsonl lines", floor_info),
    "info": ("expmate `info()` (console off)", info),
    "stdlib_logging": ("stdlib `logging` FileHandler (one line)", stdlib_logging),
}
PEERS = {"lightning_csv": "lightning", "tensorboard": "tensorboard"}


def run_case_in_child(name: str, n: int) -> dict:
    """Child side: warm up on a throwaway instance, then time ``n`` calls on a fresh one."""
    function = CASES[name][1]
    with tempfile.TemporaryDirectory(prefix="expmate-bench-") as tmp:
        warm, timed = Path(tmp, "warm"), Path(tmp, "timed")
        warm.mkdir()
        timed.mkdir()
        try:
            function(warm, min(n, WARMUP_CALLS))
        except ImportError as exc:
            return {"skipped": f"{exc.name or exc} not importable"}
        wall, cpu = function(timed, n)
    return {"seconds": wall, "cpu_seconds": cpu, "maxrss_kib": maxrss_kib()}


def rss_growth_in_child(n: int) -> dict:
    """Child side: peak RSS before and after ``n`` log_metric calls (after a 10k-call warm-up)."""
    from expmate import ExperimentLogger

    with tempfile.TemporaryDirectory(prefix="expmate-bench-") as tmp:
        logger = ExperimentLogger(run_dir=Path(tmp, "run"), console_output=False)
        for step in range(WARMUP_CALLS):
            logger.log_metric(step, "train", "loss", 2.0 - step / WARMUP_CALLS)
        gc.collect()
        before = maxrss_kib()
        for step in range(n):
            logger.log_metric(step, "train", "loss", 1.0 / (step + 1))
        after = maxrss_kib()
        logger.close()
        closed = maxrss_kib()
    return {"before_kib": before, "after_kib": after, "closed_kib": closed}


# ---------------------------------------------------------------------------------------- import


def _import_env(bytecode_dir: Path) -> dict[str, str]:
    """The environment of the import timings: bytecode cached under ``bytecode_dir``.

    Installed packages have their ``.pyc`` files; a checkout gets them on first import unless
    PYTHONDONTWRITEBYTECODE is set. Both commands read every module's bytecode from one fresh
    cache (written by a warm-up run), so neither pays for compiling source.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(bytecode_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _import_seconds(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, env=env)
    return time.perf_counter() - start


def import_times(runs: int, bytecode_dir: Path) -> tuple[Stats, Stats]:
    """Wall ms of ``python -c "import expmate"`` and ``python -c "import json, logging"``."""
    env = _import_env(bytecode_dir)
    for _ in range(2):  # writes the bytecode cache and warms the page cache; not counted
        _import_seconds("import expmate", env)
        _import_seconds("import json, logging", env)
    ours, base = [], []
    for _ in range(runs):
        ours.append(_import_seconds("import expmate", env) * 1000)
        base.append(_import_seconds("import json, logging", env) * 1000)
    return Stats(ours), Stats(base)


def _importtime(code: str, bytecode_dir: Path) -> dict[str, tuple[int, int, int]]:
    """``python -X importtime -c code`` as module -> (self µs, cumulative µs, nesting depth)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=_import_env(bytecode_dir),
    )
    found = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if match:
            self_us, cumulative, indent, module = match.groups()
            found[module] = (int(self_us), int(cumulative), len(indent) // 2)
    return found


def _importtime_min(
    code: str, bytecode_dir: Path, runs: int = 3
) -> dict[str, tuple[int, int, int]]:
    """Each module's least self and cumulative time over ``runs`` runs (less noise)."""
    found = _importtime(code, bytecode_dir)
    for _ in range(runs - 1):
        for module, (self_us, cum, depth) in _importtime(code, bytecode_dir).items():
            old = found.get(module, (self_us, cum, depth))
            found[module] = (min(old[0], self_us), min(old[1], cum), depth)
    return found


def import_profile(bytecode_dir: Path, top: int = 15) -> str:
    """The modules ``import expmate`` loads beyond ``import json, logging``, costliest first."""
    base = _importtime("import json, logging", bytecode_dir)
    ours = _importtime_min("import expmate", bytecode_dir)
    extra = {module: cost for module, cost in ours.items() if module not in base}
    total = sum(cost[0] for cost in extra.values()) / 1000
    rows = [
        [f"`{module}`", f"{cum / 1000:.1f}", f"{self_us / 1000:.1f}", str(depth)]
        for module, (self_us, cum, depth) in sorted(extra.items(), key=lambda kv: -kv[1][1])[:top]
    ]
    header = ["module (not loaded by json+logging)", "cumulative ms", "self ms", "depth"]
    return (
        f"{len(extra)} extra modules, {total:.1f} ms of self time under -X importtime "
        "(which inflates it; least of 3 runs):\n\n" + markdown_table(header, rows)
    )


# ---------------------------------------------------------------------------------------- report


def _us(value: float) -> str:
    return f"{value:.2f} µs"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


REF_NAMES = {
    "floor_metric": "floor",
    "log_metric": "float",
    "floor_info": "floor",
    "info": "info()",
}


def build_report(
    reps: int,
    wall: dict[str, Stats],
    cpu: dict[str, Stats],
    peaks: dict[str, float],
    skipped: dict[str, str],
    rss: dict | None,
    rss_calls: int,
    imports: tuple[Stats, Stats] | None,
) -> tuple[str, list[str]]:
    """The markdown table and the list of missed targets.

    A ratio is of wall-clock medians (what the targets mean); the CPU-time ratio beside it tells
    a slow path from a busy machine.
    """
    rows: list[list[str]] = []
    missed: list[str] = []

    def row(
        name: str,
        ref: str | None = None,
        target: str = "-",
        check: Callable[[float], bool] | None = None,
        *,
        inverse: bool = False,
    ) -> None:
        """One timing row; the ratio is name/ref, written as "ref Nx faster" when ``inverse``."""
        label = CASES[name][0]
        stats = wall.get(name)
        if stats is None:
            rows.append([label, "skipped", skipped.get(name, "failed"), "-", "-", "-", target, "-"])
            return
        ratio_text, result = "-", "-"
        if ref == name:
            ratio_text = "1.00x (reference)"
        elif ref is not None and ref in wall:
            value = wall[name].median / wall[ref].median
            cpu_value = cpu[name].median / cpu[ref].median
            ref_name = REF_NAMES.get(ref, ref)
            ratio_text = f"{value:.2f}x {ref_name} (CPU {cpu_value:.2f}x)"
            if inverse:
                ratio_text = f"{ref_name} {value:.2f}x faster (CPU {cpu_value:.2f}x)"
            if check is not None:
                ok = check(value)
                result = _verdict(ok)
                if not ok:
                    missed.append(f"{label}: {ratio_text}; target {target}")
        rows.append(
            [
                label,
                _us(stats.median),
                f"{stats.low:.2f}-{stats.high:.2f}",
                _us(cpu[name].median),
                f"{peaks.get(name, 0):.0f} MiB",
                ratio_text,
                target,
                result,
            ]
        )

    row("floor_metric", "floor_metric")
    row("log_metric", "floor_metric", "<= 2.5x floor", lambda r: r <= 2.5)
    row("log_metric_tensor", "log_metric", "<= 1.5x float", lambda r: r <= 1.5)
    row("log_metric_nobest", "floor_metric")
    row("lightning_csv", "floor_metric")
    row("tensorboard", "floor_metric")
    row("floor_info", "floor_info")
    row("info", "floor_info", "<= 3x floor", lambda r: r <= 3.0)
    row("stdlib_logging", "info", "info() >= 3x faster", lambda r: r >= 3.0, inverse=True)

    if rss is not None:
        growth = (rss["after_kib"] - rss["before_kib"]) / 1024
        ok = growth < 5.0
        if not ok:
            missed.append(f"peak RSS grew {growth:.1f} MiB over {rss_calls:,} log_metric calls")
        rows.append(
            [
                f"peak RSS growth over {rss_calls:,} `log_metric` calls",
                f"{growth:.2f} MiB",
                f"{rss['before_kib'] / 1024:.1f} -> {rss['after_kib'] / 1024:.1f} MiB",
                "-",
                f"{rss['closed_kib'] / 1024:.0f} MiB",
                "-",
                "< 5 MiB",
                _verdict(ok),
            ]
        )
    if imports is not None:
        ours, base = imports
        value = ours.median / base.median
        ok = value <= 1.5
        if not ok:
            missed.append(f"`import expmate` {value:.2f}x `import json, logging`; target <= 1.5x")
        for label, stats, ratio_text, target, result in (
            ("`python -c 'import json, logging'`", base, "1.00x (reference)", "-", "-"),
            (
                "`python -c 'import expmate'`",
                ours,
                f"{value:.2f}x json+logging",
                "<= 1.5x",
                _verdict(ok),
            ),
        ):
            rows.append(
                [
                    label,
                    f"{stats.median:.1f} ms",
                    f"{stats.low:.1f}-{stats.high:.1f}",
                    "-",
                    "-",
                    ratio_text,
                    target,
                    result,
                ]
            )
    header = [
        "measurement",
        "median",
        f"min-max ({reps} reps)",
        "CPU median",
        "peak RSS",
        "ratio (wall; CPU)",
        "target",
        "result",
    ]
    return markdown_table(header, rows), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 x 20k calls, 200k for RSS")
    parser.add_argument("--calls", type=int, help="timed calls per repetition (default 100k)")
    parser.add_argument("--reps", type=int, help="repetitions (default 5)")
    parser.add_argument("--import-runs", type=int, help="interpreter starts per import timing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    calls = args.calls or (20_000 if args.quick else 100_000)
    if args.child == "rss":
        print(json.dumps(rss_growth_in_child(calls)))
        return 0
    if args.child:
        print(json.dumps(run_case_in_child(args.child, calls)))
        return 0

    reps = args.reps or (3 if args.quick else 5)
    import_runs = args.import_runs or (7 if args.quick else 15)
    rss_calls = 200_000 if args.quick else 1_000_000
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    cpu_samples: dict[str, list[float]] = {name: [] for name in CASES}
    peaks: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for rep in range(reps):
        for name in CASES:
            if name in skipped:
                continue
            print(f"[{rep + 1}/{reps}] {name}", file=sys.stderr, flush=True)
            try:
                data = run_child(SCRIPT, ["--child", name, "--calls", str(calls)])
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                skipped[name] = "failed (see stderr)"
                print(exc, file=sys.stderr)
                continue
            if "skipped" in data:
                skipped[name] = f"{data['skipped']} (`pip install {PEERS.get(name, '?')}`)"
                continue
            samples[name].append(data["seconds"] / calls * 1e6)
            cpu_samples[name].append(data["cpu_seconds"] / calls * 1e6)
            peaks[name] = max(peaks.get(name, 0.0), data["maxrss_kib"] / 1024)
    wall = {name: Stats(values) for name, values in samples.items() if values}
    cpu = {name: Stats(values) for name, values in cpu_samples.items() if values}

    print("[rss] log_metric", file=sys.stderr, flush=True)
    try:
        rss: dict | None = run_child(SCRIPT, ["--child", "rss", "--calls", str(rss_calls)])
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(exc, file=sys.stderr)
        rss = None
    print("[import] timing", file=sys.stderr, flush=True)
    imports: tuple[Stats, Stats] | None = None
    profile = ""
    with tempfile.TemporaryDirectory(prefix="expmate-bench-pyc-") as bytecode_dir:
        try:
            imports = import_times(import_runs, Path(bytecode_dir))
            if imports[0].median > 1.5 * imports[1].median:
                profile = import_profile(Path(bytecode_dir))
        except subprocess.CalledProcessError as exc:
            print(exc, file=sys.stderr)

    table, missed = build_report(reps, wall, cpu, peaks, skipped, rss, rss_calls, imports)
    print(f"## expmate core benchmarks ({calls:,} calls x {reps} reps per case)\n")
    load_after = os.getloadavg()[0]
    print(f"Machine: {machine_description()}")
    print(
        f"1-minute load average {load_before:.1f} at the start, {load_after:.1f} at the end "
        f"(on {os.cpu_count()} CPUs: above that, other processes share the cores and wall "
        "times spread; compare the CPU column).\n"
    )
    print(table)
    print(
        "\nµs per call includes the final flush/close; peak RSS is the child interpreter's "
        "(imports included; the tensor case holds its pre-made tensors). Import times: median of "
        f"{import_runs} interpreter starts each."
    )
    for name, why in skipped.items():
        print(f"\nSkipped {CASES[name][0]}: {why}.")
    if profile:
        print("\nWhere `import expmate` spends its time (`python -X importtime`):\n")
        print(profile)
    print(f"\nTargets missed: {len(missed)}" + "".join(f"\n- {m}" for m in missed))
    print(f"\nTotal benchmark time {time.perf_counter() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
