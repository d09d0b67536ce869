"""The import checkpoint: how far an import got, so that a re-run skips what is confirmed.

The server is idempotent, so the checkpoint is an optimisation, never a correctness need: a
lost or stale checkpoint only means records are sent again. It lives next to the report
(REPORT.checkpoint.json) and is replaced atomically after every confirmed batch, *after* the
report lines of that batch are on disk; `report_bytes` lets a resumed run cut off report lines
written after the last checkpoint, so that the report never holds a record twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

CHECKPOINT_FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """Records per outcome."""

    created: int = 0
    merged: int = 0
    conflict: int = 0
    rejected: int = 0

    @property
    def total(self) -> int:
        return self.created + self.merged + self.conflict + self.rejected

    def plus(self, other: OutcomeCounts) -> OutcomeCounts:
        return OutcomeCounts(
            created=self.created + other.created,
            merged=self.merged + other.merged,
            conflict=self.conflict + other.conflict,
            rejected=self.rejected + other.rejected,
        )


@dataclass(frozen=True, slots=True)
class ImportCheckpoint:
    """Progress of one import of one file."""

    file_sha256: str
    import_id: str
    source_province: str
    records_confirmed: int = 0
    report_bytes: int = 0
    counts: OutcomeCounts = field(default_factory=OutcomeCounts)
    completed: bool = False

    def matches(self, file_sha256: str, import_id: str, source_province: str) -> bool:
        """True when this checkpoint belongs to the same file, import and province."""
        return (
            self.file_sha256 == file_sha256
            and self.import_id == import_id
            and self.source_province == source_province
        )

    def after_batch(
        self, records: int, report_bytes: int, counts: OutcomeCounts
    ) -> ImportCheckpoint:
        return replace(
            self,
            records_confirmed=self.records_confirmed + records,
            report_bytes=report_bytes,
            counts=self.counts.plus(counts),
        )

    def to_json(self) -> dict[str, Any]:
        return {"format_version": CHECKPOINT_FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportCheckpoint:
        if data.get("format_version") != CHECKPOINT_FORMAT_VERSION:
            raise ValueError(f"unknown checkpoint format {data.get('format_version')!r}")
        return cls(
            file_sha256=str(data["file_sha256"]),
            import_id=str(data["import_id"]),
            source_province=str(data["source_province"]),
            records_confirmed=int(data["records_confirmed"]),
            report_bytes=int(data["report_bytes"]),
            counts=OutcomeCounts(**{key: int(value) for key, value in data["counts"].items()}),
            completed=bool(data["completed"]),
        )


def checkpoint_path_for(report_path: Path) -> Path:
    """REPORT.checkpoint.json beside the report."""
    return report_path.with_name(report_path.name + ".checkpoint.json")


def load_checkpoint(path: Path) -> ImportCheckpoint | None:
    """The checkpoint at `path`; None when absent or unreadable (then the import starts over,
    which is safe because the server is idempotent)."""
    try:
        return ImportCheckpoint.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_checkpoint(path: Path, checkpoint: ImportCheckpoint) -> None:
    """Writes the checkpoint atomically (temporary file, fsync, rename)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as stream:
        json.dump(checkpoint.to_json(), stream, indent=2)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
