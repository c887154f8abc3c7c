"""Sinks: each owns one output (console, text log, JSONL events, metrics CSV) and knows nothing of
ranks, torch or configuration. A sink that fails reports once to stderr and never raises."""

from __future__ import annotations

from expmate.sinks.base import AppendFile, report_failure
from expmate.sinks.console import ConsoleSink
from expmate.sinks.handler import HandlerSink
from expmate.sinks.jsonl import JsonlSink, json_line_value
from expmate.sinks.metrics_csv import MetricsCsvSink, csv_field
from expmate.sinks.text_log import TextLogSink, format_clock

__all__ = [
    "AppendFile",
    "ConsoleSink",
    "HandlerSink",
    "JsonlSink",
    "MetricsCsvSink",
    "TextLogSink",
    "csv_field",
    "format_clock",
    "json_line_value",
    "report_failure",
]
