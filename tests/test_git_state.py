"""git_state.capture: the state of a repository, and every way git can fail, as a record."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from expmate import git_state
from tests.conftest import clean_git_record, git


def test_clean_repository(git_repo: Path) -> None:
    """A clean tree: commit, branch, not dirty, nothing untracked, no diff."""
    record, diff = git_state.capture(git_repo)
    assert record == clean_git_record(git_repo)
    assert diff is None


def test_dirty_repository_from_a_subdirectory(git_repo: Path) -> None:
    """Changed, staged and untracked files, seen from a subdirectory: the diff against HEAD."""
    (git_repo / "train.py").write_text("lr = 0.2\nepochs = 3\n")
    (git_repo / "model.py").write_text("layers = 2\n")
    git(git_repo, "add", "model.py")
    (git_repo / "notes.txt").write_text("untracked\n")
    (git_repo / "sub").mkdir()
    (git_repo / "sub" / "scratch.txt").write_text("untracked too\n")
    record, diff = git_state.capture(git_repo / "sub")
    expected = git(git_repo, "diff", "HEAD").encode()
    assert record == {
        **clean_git_record(git_repo),
        "dirty": True,
        "untracked": 2,
        "diff_bytes": len(expected),
    }
    assert diff == expected
    assert b"-lr = 0.1\n+lr = 0.2\n" in expected and b"+layers = 2\n" in expected


def test_detached_head_and_rename(git_repo: Path) -> None:
    """A detached HEAD has no branch; a staged rename makes the tree dirty."""
    git(git_repo, "checkout", "-q", "--detach")
    git(git_repo, "mv", "README", "README.md")
    record, diff = git_state.capture(git_repo)
    assert (record["branch"], record["dirty"], record["untracked"]) == (None, True, 0)
    assert diff == git(git_repo, "diff", "HEAD").encode()


def test_repository_without_commits(tmp_path: Path, git_repo: Path) -> None:
    """No commit yet: commit None, and the diff is what is staged plus what changed since."""
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "dev")
    (root / "a.py").write_text("x = 1\n")
    git(root, "add", "a.py")
    (root / "a.py").write_text("x = 2\n")
    record, diff = git_state.capture(root)
    assert (record["commit"], record["branch"], record["dirty"]) == (None, "dev", True)
    assert diff == (git(root, "diff", "--cached") + git(root, "diff")).encode()


def test_long_diff_is_cut(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A diff over the limit is cut at the limit and marked as cut."""
    monkeypatch.setattr(git_state, "DIFF_LIMIT", 100)
    (git_repo / "train.py").write_text("".join(f"line {i}\n" for i in range(200)))
    record, diff = git_state.capture(git_repo)
    full = git(git_repo, "diff", "HEAD").encode()
    assert (record["diff_bytes"], record["diff_truncated"]) == (100, True)
    assert diff == full[:100]


def test_not_a_repository(tmp_path: Path) -> None:
    """A directory outside any repository."""
    assert git_state.capture(tmp_path) == ({"state": "not_a_repository"}, None)


def test_git_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No git on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_state.capture(tmp_path) == ({"state": "git_not_found"}, None)


def test_corrupt_index(git_repo: Path) -> None:
    """A corrupt index: an error naming git's complaint."""
    (git_repo / ".git" / "index").write_bytes(b"garbage")
    record, diff = git_state.capture(git_repo)
    assert record == {
        "state": "error",
        "root": str(git_repo),
        "error": "`git status` failed: fatal: .git/index: index file smaller than expected",
    }
    assert diff is None


def test_corrupt_head(git_repo: Path) -> None:
    """A corrupt HEAD makes git deny the repository: reported as a broken one, not as none."""
    (git_repo / ".git" / "HEAD").write_text("garbage\n")
    record, _ = git_state.capture(git_repo)
    assert record == {
        "state": "error",
        "error": f"git does not accept {git_repo / '.git'} as a repository",
    }


def test_git_that_hangs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A git that never answers is stopped at the time limit."""
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(git_state, "TIME_LIMIT", 0.3)
    assert git_state.capture(tmp_path) == (
        {"state": "error", "error": "`git rev-parse` did not finish within 0.3s"},
        None,
    )


def test_read_only_home(git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home directory nothing can be written to changes nothing: git only reads."""
    home = tmp_path / "home"  # a file: unwritable as a directory even for root
    home.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL")
    (git_repo / "train.py").write_text("lr = 0.3\nepochs = 3\n")
    record, diff = git_state.capture(git_repo)
    assert (record["state"], record["dirty"]) == ("repository", True)
    assert diff == git(git_repo, "diff", "HEAD").encode()


def test_parse_status_counts_entries() -> None:
    """Porcelain v2: ordinary, renamed (two paths), unmerged and untracked entries."""
    text = "\0".join(
        [
            "# branch.oid 1234",
            "# branch.head (detached)",
            "2 R. N... 100644 100644 100644 a b R100 new name.txt",
            "old name.txt",
            "? x",
            "? y",
            "",
        ]
    )
    assert git_state.parse_status(text) == {
        "commit": "1234",
        "branch": None,
        "dirty": True,
        "untracked": 2,
    }
