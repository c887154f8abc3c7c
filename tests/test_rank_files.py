"""The file names of each rank: plain for rank 0, ``_rank{r}`` before the extension otherwise."""

from __future__ import annotations

from expmate.rank_files import attempts_name, events_name, log_name, metrics_name


def test_rank_zero_keeps_the_plain_names() -> None:
    """Rank 0 writes the files a single process writes."""
    names = (log_name(0), events_name(0), metrics_name(0), attempts_name(0))
    assert names == ("exp.log", "events.jsonl", "metrics.csv", "attempts.jsonl")


def test_other_ranks_add_their_rank_before_the_extension() -> None:
    """Rank r's files carry ``_rank{r}``, whatever the number of digits."""
    names = (log_name(3), events_name(12), metrics_name(1), attempts_name(7))
    assert names == (
        "exp_rank3.log",
        "events_rank12.jsonl",
        "metrics_rank1.csv",
        "attempts_rank7.jsonl",
    )
