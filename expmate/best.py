"""Best-metric tracking: mode detection from the name, updates, atomic save and reload.

``best.json`` maps ``{split}_{name}`` to ``{"value", "step", "mode"}``. Updates happen in memory;
the file is replaced atomically (temp file + ``os.replace``) when the logger flushes, so an improving
loss costs no file write per call and a kill at any instant leaves the old or the new file. The
file only ever names rows that reached ``metrics.csv``: a best whose row could not be written (a
full disk) is kept in memory but not saved (:meth:`BestTracker.settle`).
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from expmate.sinks.base import replace_file, report_failure

MODES = ("min", "max")

_MIN_WORDS = frozenset(
    [
        "loss",
        "losses",
        "error",
        "err",
        "errors",
        "perplexity",
        "ppl",
        "mse",
        "mae",
        "rmse",
        "msle",
        "mape",
        "smape",
        "wer",
        "cer",
        "ter",
        "fid",
        "kid",
        "nll",
        "bpd",
        "bpc",
        "eer",
        "kl",
        "kld",
        "divergence",
        "lpips",
        "regret",
        "cost",
        "distance",
    ]
)
_MAX_WORDS = frozenset(
    [
        "accuracy",
        "acc",
        "f1",
        "fscore",
        "auc",
        "auroc",
        "auprc",
        "ap",
        "precision",
        "prec",
        "recall",
        "iou",
        "miou",
        "map",
        "bleu",
        "sacrebleu",
        "rouge",
        "rougel",
        "dice",
        "psnr",
        "ssim",
        "r2",
        "mrr",
        "ndcg",
        "hit",
        "hits",
        "hitrate",
        "reward",
        "return",
        "score",
        "top1",
        "top5",
        "em",
        "exact",
        "meteor",
        "cider",
        "spice",
        "sensitivity",
        "specificity",
        "mcc",
        "kappa",
    ]
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=4096)
def detect_mode(name: str) -> str | None:
    """The direction in which ``name`` improves, from the words in it, or None when unknown.

    The last recognised word wins (``top1_error`` is an error, so ``min``); trailing digits are
    ignored (``rouge1`` is ``rouge``).

    Example:
        >>> detect_mode("val_loss"), detect_mode("top1_accuracy"), detect_mode("lr")
        ('min', 'max', None)
    """
    words = _SPLIT.split(_CAMEL.sub("_", name).lower())
    for word in reversed(words):
        for candidate in (word, word.rstrip("0123456789")):
            if candidate in _MIN_WORDS:
                return "min"
            if candidate in _MAX_WORDS:
                return "max"
    return None


def check_mode(mode: str | None) -> None:
    """Raise ValueError unless ``mode`` is None, ``'min'`` or ``'max'``."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be 'min', 'max' or None (detect from the name), not {mode!r}")


Entry = tuple[float, int, str]  # (value, step, mode) of one best, as taken at a flush


class BestTracker:
    """Keeps the best value of each tracked metric and persists them to ``best.json``.

    Args:
        path: the file to load from and save to, or None to keep bests in memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        # key -> [value, step, mode]; a list so an update is three stores, no allocation.
        self._best: dict[str, list[Any]] = {}
        self._saved: dict[str, Entry] = {}  # what best.json holds (or is about to)
        self._unsaved: dict[str, Entry] = {}  # bests whose row never reached the disk
        self._stale = False  # the last write of best.json failed: write it again
        self.dirty = False
        if path is not None:
            self._load(path)
            self._saved = {k: (e[0], e[1], e[2]) for k, e in self._best.items()}

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            report_failure(f"reading {path}", exc)
            return
        try:
            data = json.loads(text)
            for key, entry in data.items():
                self._best[key] = [float(entry["value"]), entry["step"], entry["mode"]]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            report_failure(f"reading {path} (kept on disk, tracking starts afresh)", exc)
            self._best.clear()

    def update(self, key: str, value: float, step: int, mode: str) -> bool:
        """Record ``value`` if it beats the best so far; NaN and infinities never do.

        Returns:
            True when ``value`` is the new best.
        """
        entry = self._best.get(key)
        if entry is not None and entry[2] == mode:
            if not (value < entry[0] if mode == "min" else value > entry[0]):
                return False
            if not math.isfinite(value):
                return False
            entry[0] = value
            entry[1] = step
        else:
            if not math.isfinite(value):
                return False
            self._best[key] = [value, step, mode]
        self.dirty = True
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        """``{'value', 'step', 'mode'}`` for ``key`` (a copy), or None if it has no best yet."""
        entry = self._best.get(key)
        if entry is None:
            return None
        return {"value": entry[0], "step": entry[1], "mode": entry[2]}

    @property
    def unsaved(self) -> bool:
        """Whether some best is kept from ``best.json`` because its row was not written."""
        return bool(self._unsaved)

    def as_written(self, key: str, best: dict[str, Any] | None) -> dict[str, Any] | None:
        """``best`` (a :meth:`get` of ``key`` taken with a flush's rows) as ``best.json`` holds
        it once that flush is written: a best whose row could not be written gives way to the
        key's previous saved best (None if there is none)."""
        unsaved = self._unsaved.get(key)
        if best is None or unsaved != (best["value"], best["step"], best["mode"]):
            return best
        saved = self._saved.get(key)
        return None if saved is None else {"value": saved[0], "step": saved[1], "mode": saved[2]}

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """All bests (in memory: also those whose row could not be written)."""
        return {key: {"value": e[0], "step": e[1], "mode": e[2]} for key, e in self._best.items()}

    def modes(self) -> dict[str, str]:
        """``{key: mode}`` of every tracked key."""
        return {key: e[2] for key, e in self._best.items()}

    def replace(self, bests: dict[str, dict[str, Any]]) -> None:
        """Make ``bests`` (``{key: {"value", "step", "mode"}}``) the bests, e.g. after a resume."""
        self._best = {k: [e["value"], e["step"], e["mode"]] for k, e in bests.items()}
        self._unsaved.clear()
        self.dirty = True

    def snapshot(self) -> dict[str, Entry] | None:
        """The bests as they are now if anything changed since the last snapshot, else None.

        Taken together with the metric rows of the same flush, so ``best.json`` never names a
        step whose row is not yet in ``metrics.csv``.
        """
        if self.path is None or not (self.dirty or self._stale):
            return None
        self.dirty = False
        return {k: (e[0], e[1], e[2]) for k, e in self._best.items()}

    def settle(
        self, snapshot: dict[str, Entry] | None, lost: set[tuple[str, int, float]]
    ) -> str | None:
        """The text of ``best.json`` for a :meth:`snapshot` once the rows taken with it were
        written, or None when the file need not change.

        Args:
            snapshot: what :meth:`snapshot` returned.
            lost: ``(key, step, value)`` of the rows of that flush that could not be written; a
                best among them is not saved (the file keeps the key's previous best) for as
                long as it stays the best.
        """
        if snapshot is None:
            return None
        changed = self._stale
        for key, entry in snapshot.items():
            if (key, entry[1], entry[0]) in lost:
                self._unsaved[key] = entry
                continue
            if self._unsaved.get(key) == entry:
                continue
            self._unsaved.pop(key, None)
            if self._saved.get(key) != entry:
                self._saved[key] = entry
                changed = True
        for key in [k for k in self._saved if k not in snapshot]:
            del self._saved[key]  # dropped by a resume
            changed = True
        if not changed:
            return None
        saved = {k: {"value": e[0], "step": e[1], "mode": e[2]} for k, e in self._saved.items()}
        return json.dumps(saved, indent=2) + "\n"

    def write(self, text: str | None) -> None:
        """Replace ``best.json`` atomically with a :meth:`settle` text (None: nothing to do)."""
        if text is None or self.path is None:
            return
        try:
            replace_file(self.path, text)
        except OSError as exc:
            report_failure(f"writing {self.path}", exc)
            self._stale = True
            return
        self._stale = False

    def save(self) -> None:
        """Replace ``best.json`` atomically if anything changed since the last save."""
        self.write(self.settle(self.snapshot(), set()))
