"""Reading back what each tracker wrote, with the tracker's own reader where it has one.

- TensorBoard: TensorBoard's ``plugin_event_accumulator`` (the reader its server uses).
- MLflow: ``MlflowClient`` on the store the mirror wrote.
- W&B: an offline run is one ``run-<id>.wandb`` file: W&B's header (``:W&B``, a 2-byte magic,
  a version byte) followed by records in the LevelDB log format (32 KiB blocks; each record a
  7-byte header of CRC-32, length and type FULL/FIRST/MIDDLE/LAST), each holding one W&B
  protobuf ``Record``. wandb 0.31 ships no Python reader of that file (its writer is the Go
  ``wandb-core``), so the framing is read here and every record is parsed with wandb's own
  ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def tensorboard_scalars(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, Any]]:
    """``({tag: [(step, value), ...]}, hparams)`` of the event files in ``log_dir``.

    Only tags TensorBoard shows as scalars (scalars plugin, scalar data class) are returned.
    """
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    acc = pea.EventAccumulator(str(log_dir), size_guidance={pea.TENSORS: 0})
    acc.Reload()
    scalars: dict[str, list[tuple[int, float]]] = {}
    for tag in acc.Tags()["tensors"]:
        meta = acc.SummaryMetadata(tag)
        if meta.plugin_data.plugin_name != "scalars":
            continue
        assert meta.data_class == summary_pb2.DATA_CLASS_SCALAR, tag
        scalars[tag] = [
            (e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in acc.Tensors(tag)
        ]
    hparams: dict[str, Any] = {}
    hparams_tags = acc.PluginTagToContent("hparams") if "hparams" in acc.ActivePlugins() else {}
    for content in hparams_tags.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        for key, value in data.session_start_info.hparams.items():
            hparams[key] = getattr(value, value.WhichOneof("kind"))
    return scalars, hparams


def wandb_records(path: Path) -> list[Any]:
    """Every record of an offline W&B run file, parsed with wandb's protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    records, parts, pos = [], [], _HEADER
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # a block's trailer: zero bytes, skipped
            pos += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        body = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 0 and length == 0:
            continue
        assert zlib.crc32(bytes([kind]) + body) == checksum, f"bad checksum at {pos}"
        parts.append(body)
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def _items(entries: Any) -> dict[str, Any]:
    return {"/".join(e.nested_key) or e.key: json.loads(e.value_json) for e in entries}


def wandb_run(run_dir: Path, *, timeout: float = 10.0) -> dict[str, Any]:
    """History rows, config, final summary and exit code of the one offline run under ``run_dir``.

    W&B's ``run.finish()`` returns once the run has ended but only publishes the request that
    closes its stream: wandb-core writes the file's last buffered records (the history among
    them) a few milliseconds later. So the file is read until it holds the exit record, for at
    most ``timeout`` seconds (then what is there is returned, and the caller's checks fail).
    """
    (path,) = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = wandb_records(path)
        except AssertionError:  # read in the middle of a write
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    history, config, summary, exit_code = [], {}, {}, None
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(_items(record.history.item))
        elif kind == "run":
            config.update(_items(record.run.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
        elif kind == "summary":
            summary.update(_items(record.summary.update))
        elif kind == "exit":
            exit_code = record.exit.exit_code
    return {"history": history, "config": config, "summary": summary, "exit_code": exit_code}
