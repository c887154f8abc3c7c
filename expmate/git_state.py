"""The state of the git working tree a run started in: commit, branch, dirty flag and diff.

Read with the ``git`` command (never a library), every call under a time limit and with optional
locks off, so that a run never waits long for git, never takes the index lock from under a
developer's own git command, and never fails because of git: no git on ``PATH``, a directory that
is no repository, a broken repository or a command that hangs all come back as a record saying so.

Example:
    >>> record, diff = capture("/tmp")  # doctest: +SKIP
    >>> record
    {'state': 'not_a_repository'}
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

DIFF_LIMIT = 1 << 20
"""Bytes of the uncommitted diff that are kept; a longer diff is cut there (and marked as cut)."""

TIME_LIMIT = 15.0
"""Seconds that all git commands of one capture may take together."""

# No pager, no prompt for credentials, messages in English, and no optional lock: `git status`
# would otherwise refresh the index and take index.lock, racing the user's own git commands.
_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}


class GitError(Exception):
    """A git command failed, could not start, or ran out of time."""


def _environment() -> dict[str, str]:
    return {**os.environ, **_ENV}


def _run(args: list[str], cwd: Path, deadline: float) -> str:
    """The standard output of ``git *args`` run in ``cwd``.

    Raises:
        GitError: git exited with an error (its last line of stderr is the message), could not
            be started, or did not finish before ``deadline``.
    """
    timeout = max(deadline - time.monotonic(), 0.1)
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {args[0]}` did not finish within {TIME_LIMIT:g}s") from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise GitError(f"`git {args[0]}` failed: {reason}")
    return done.stdout.decode("utf-8", "surrogateescape")


def _run_capped(args: list[str], cwd: Path, deadline: float, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the output of ``git *args``, and whether there was more.

    The output is read as it comes and git is stopped at the limit, so a huge diff never sits in
    memory whole.

    Raises:
        GitError: as :func:`_run`.
    """
    try:
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(max(deadline - time.monotonic(), 0.1), stop)
    timer.daemon = True
    timer.start()
    try:
        assert proc.stdout is not None
        data = proc.stdout.read(limit + 1)
        cut = len(data) > limit
        if cut:
            proc.kill()
        proc.stdout.close()
        code = proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        raise GitError(f"`git {args[0]}` did not finish within {TIME_LIMIT:g}s")
    if code != 0 and not cut:
        raise GitError(f"`git {args[0]}` failed: exit status {code}")
    return data[:limit], cut


def parse_status(text: str) -> dict[str, Any]:
    """Commit, branch, dirty flag and untracked count from ``git status --porcelain=v2 --branch -z``.

    Example:
        >>> parse_status("# branch.oid abc\\0# branch.head main\\0? new.txt\\0")
        {'commit': 'abc', 'branch': 'main', 'dirty': False, 'untracked': 1}
    """
    commit: str | None = None
    branch: str | None = None
    dirty = False
    untracked = 0
    entries = iter(text.split("\0"))
    for entry in entries:
        if entry.startswith("# branch.oid "):
            oid = entry[len("# branch.oid ") :]
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry[len("# branch.head ") :]
            branch = None if head == "(detached)" else head
        elif entry.startswith(("1 ", "u ")):
            dirty = True
        elif entry.startswith("2 "):
            dirty = True
            next(entries, None)  # a rename's second field is the original path
        elif entry.startswith("? "):
            untracked += 1
    return {"commit": commit, "branch": branch, "dirty": dirty, "untracked": untracked}


def _diff(root: Path, commit: str | None, deadline: float) -> tuple[bytes, bool]:
    """Tracked changes against the last commit (staged and not), cut at :data:`DIFF_LIMIT`."""
    options = ["--no-color", "--no-ext-diff", "--no-textconv"]
    if commit is not None:
        return _run_capped(["diff", "HEAD", *options], root, deadline, DIFF_LIMIT)
    # No commit yet: what is staged, then what changed since it was staged.
    staged, cut = _run_capped(["diff", "--cached", *options], root, deadline, DIFF_LIMIT)
    if cut:
        return staged, cut
    rest, cut = _run_capped(["diff", *options], root, deadline, DIFF_LIMIT - len(staged))
    return staged + rest, cut


def _unreadable_git_dir(directory: Path) -> Path | None:
    """The ``.git`` nearest above ``directory`` when git said "not a git repository": a broken
    repository (a corrupt ``HEAD``, say) rather than none at all."""
    for folder in [directory, *directory.resolve().parents]:
        candidate = folder / ".git"
        if candidate.exists():
            return candidate
    return None


def capture(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes | None]:
    """The git state of the repository that contains ``directory``; never raises.

    Returns:
        ``(record, diff)``. ``record["state"]`` is ``"repository"`` (with ``root``, ``commit``,
        ``branch``, ``dirty``, ``untracked``, ``diff_bytes`` and ``diff_truncated``),
        ``"not_a_repository"``, ``"git_not_found"`` or ``"error"`` (with ``error``, the reason).
        ``diff`` is the uncommitted diff (None when the tree is clean or git failed).
    """
    if shutil.which("git") is None:
        return {"state": "git_not_found"}, None
    deadline = time.monotonic() + TIME_LIMIT
    where = Path(directory)
    try:
        root = Path(_run(["rev-parse", "--show-toplevel"], where, deadline).strip())
    except GitError as exc:
        if "not a git repository" not in str(exc):
            return {"state": "error", "error": str(exc)}, None
        broken = _unreadable_git_dir(where)
        if broken is None:
            return {"state": "not_a_repository"}, None
        return {"state": "error", "error": f"git does not accept {broken} as a repository"}, None
    try:
        status = parse_status(_run(["status", "--porcelain=v2", "--branch", "-z"], root, deadline))
        diff, cut = _diff(root, status["commit"], deadline) if status["dirty"] else (b"", False)
    except GitError as exc:
        return {"state": "error", "root": str(root), "error": str(exc)}, None
    record = {"state": "repository", "root": str(root), **status}
    record.update(diff_bytes=len(diff), diff_truncated=cut)
    return record, (diff if status["dirty"] else None)
