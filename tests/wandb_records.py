"""A reader for W&B's offline run files, so tests check what was really written.

A ``run-<id>.wandb`` file is a record log: a 7-byte header (``:W&B``, magic 0xBEE1, version),
then 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length, type: full, first,
middle or last), whose payloads are serialised ``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    """Every Record in a .wandb file, checksums verified."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = HEADER.unpack_from(data, 0)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    out, pending, position = [], b"", HEADER.size
    while position + CHUNK.size <= len(data):
        left = BLOCK - position % BLOCK
        if left < CHUNK.size:
            position += left
            continue
        checksum, length, kind = CHUNK.unpack_from(data, position)
        position += CHUNK.size
        if kind == 0 and length == 0:
            break
        payload = data[position : position + length]
        position += length
        assert zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF == checksum, "corrupt chunk"
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        else:
            pending += payload
        record = pb.Record()
        record.ParseFromString(pending)
        out.append(record)
        pending = b""
    return out


@dataclass
class OfflineRun:
    """The parts of a run the tests look at."""

    run_id: str = ""
    project: str = ""
    group: str = ""
    name: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    has_system_metrics: bool = False
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (name, type)


def _value(item: Any) -> Any:
    return json.loads(item.value_json)


def read_run(run_dir: Path) -> OfflineRun:
    """Read ``offline-run-*/run-*.wandb`` into an OfflineRun."""
    run = OfflineRun()
    for record in records(next(run_dir.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.group, run.name = (
                r.run_id,
                r.project,
                r.run_group,
                r.display_name,
            )
            run.job_type, run.tags = r.job_type, list(r.tags)
            for item in r.config.update:
                run.config[item.key] = _value(item)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key] = _value(item)
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = _value(item)
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = _value(item)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "stats":
            run.has_system_metrics = True
        elif kind == "artifact":
            run.artifacts.append((record.artifact.name, record.artifact.type))
    for key in list(run.config):  # wandb stores user config entries as {"value": ...}
        if isinstance(run.config[key], dict) and set(run.config[key]) == {"value"}:
            run.config[key] = run.config[key]["value"]
    return run


def read_runs(wandb_dir: Path, job_type: str = "trial") -> list[OfflineRun]:
    """The offline runs of one job type: ``trial`` (one per trial) or ``study`` (one per study)."""
    runs = [read_run(d) for d in sorted(wandb_dir.glob("offline-run-*"))]
    return [r for r in runs if r.job_type == job_type]
