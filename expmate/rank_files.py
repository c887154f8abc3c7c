"""The names of a run's files for each rank: rank 0 writes ``exp.log``, rank r ``exp_rank{r}.log``.

Every rank of a torchrun job writes its own files into the same run directory. Rank 0's carry the
plain names (the ones a single process writes); rank r's add ``_rank{r}`` before the extension.
"""

from __future__ import annotations


def rank_file(name: str, rank: int) -> str:
    """``name`` for rank 0, ``<stem>_rank{r}.<extension>`` for rank r.

    Example:
        >>> rank_file("metrics.csv", 0), rank_file("metrics.csv", 2)
        ('metrics.csv', 'metrics_rank2.csv')
    """
    if rank == 0:
        return name
    stem, _, extension = name.partition(".")
    return f"{stem}_rank{rank}.{extension}"


def log_name(rank: int) -> str:
    """``exp.log`` for rank 0, ``exp_rank{r}.log`` otherwise."""
    return rank_file("exp.log", rank)


def events_name(rank: int) -> str:
    """``events.jsonl`` for rank 0, ``events_rank{r}.jsonl`` otherwise."""
    return rank_file("events.jsonl", rank)


def metrics_name(rank: int) -> str:
    """The metrics file of ``rank``: ``metrics.csv`` or ``metrics_rank{r}.csv``."""
    return rank_file("metrics.csv", rank)


def attempts_name(rank: int) -> str:
    """The restart history file of ``rank``: ``attempts.jsonl`` or ``attempts_rank{r}.jsonl``."""
    return rank_file("attempts.jsonl", rank)
