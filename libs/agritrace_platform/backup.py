"""Backups of the all-in-one platform's data (its SQLite files and the personal-data key under
AGRITRACE_DATA_DIR, the bridges' files included):

    python -m agritrace_platform.backup create DEST      # while the platform runs, or not
    python -m agritrace_platform.backup verify SRC
    python -m agritrace_platform.backup restore SRC [--force]   # with the platform stopped

`create` copies each database with SQLite's online backup API, a consistent copy of each file
even while the platform writes to it (the files at one instant only with the platform stopped:
services refer to each other's records), then checks the copy (`PRAGMA quick_check`); it writes
`manifest.json` (each file's size and SHA-256) last: a backup without a manifest is unfinished,
and running `create` again into the same directory redoes it. `restore` checks every file
against the manifest before it touches anything, refuses while a platform holds the data
directory (its lock file) and, without --force, when the directory already holds databases,
which --force moves into a folder `before-restore-<time>` (nothing is destroyed, and no
database or journal the backup lacks stays beside it); each file is copied beside its target
first. The key file is the one protected personal data (ID numbers) can be read with: a
backup holds it, so keep backups as carefully as the data directory. With
AGRITRACE_DATABASE_URL set the data lives in PostgreSQL, whose own backups (pg_dump per
service schema, or the operator's) apply instead."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

MANIFEST = "manifest.json"
FORMAT = 1
KEY_FILE = "pii.key"
LOCK_FILE = ".platform.lock"
PAGES_PER_STEP = 1024  # SQLite pages copied between progress reports (4 MiB at 4 KiB pages)

Progress = Callable[[str], None]


class BackupError(Exception):
    """Why a backup or a restore could not be done; nothing was changed."""


@dataclass(frozen=True)
class BackedUpFile:
    name: str
    kind: str  # "sqlite" or "key"
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    format: int
    created_at: str
    source: str
    files: tuple[BackedUpFile, ...]

    def write(self, directory: Path) -> None:
        text = json.dumps(asdict(self), ensure_ascii=False, indent=1)
        _write_atomically(directory / MANIFEST, text.encode())

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        if not path.exists():
            raise BackupError(f"{directory}: no {MANIFEST} (not a backup, or an unfinished one)")
        try:
            raw = json.loads(path.read_text())
            files = tuple(BackedUpFile(**entry) for entry in raw["files"])
            manifest = cls(raw["format"], raw["created_at"], raw["source"], files)
        except (ValueError, KeyError, TypeError) as error:
            raise BackupError(f"{path}: not a manifest of this tool ({error})") from error
        if manifest.format != FORMAT:
            raise BackupError(f"{path}: format {manifest.format}, this tool reads {FORMAT}")
        return manifest


@contextmanager
def data_directory_lock(data_dir: Path) -> Iterator[None]:
    """Held by a running platform for as long as it runs, and by a restore: a restore never
    replaces files under a running platform, and two platforms never share one directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"{data_dir} is in use by a running platform (its "
                              f"{LOCK_FILE} is held): stop it first") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def databases(data_dir: Path) -> list[Path]:
    """The SQLite files of a data directory: one per service, one per bridge."""
    return sorted(data_dir.glob("*.db"))


def create(data_dir: Path, destination: Path, progress: Progress = print) -> Manifest:
    if not data_dir.is_dir() or not databases(data_dir):
        raise BackupError(f"{data_dir}: no databases to back up")
    if (destination / MANIFEST).exists():
        raise BackupError(f"{destination} already holds a finished backup; choose another")
    destination.mkdir(parents=True, exist_ok=True)
    files = [_backup_database(path, destination, progress) for path in databases(data_dir)]
    key = data_dir / KEY_FILE
    if key.exists():
        files.append(_copy_file(key, destination / KEY_FILE, "key"))
    else:
        progress(f"[backup] no {KEY_FILE} here (AGRITRACE_PII_KEY set?): without that key the "
                 "backup's ID and phone numbers cannot be read; keep it with the backup")
    manifest = Manifest(FORMAT, datetime.now(UTC).isoformat(timespec="seconds"),
                        str(data_dir.resolve()), tuple(files))
    manifest.write(destination)
    total = sum(entry.bytes for entry in files)
    progress(f"[backup] {len(files)} files, {total:,} bytes in {destination}")
    return manifest


def verify(source: Path) -> Manifest:
    """The backup's manifest, once every file it lists is there with its size and hash."""
    manifest = Manifest.read(source)
    for entry in manifest.files:
        if Path(entry.name).name != entry.name or entry.name in ("", ".", ".."):
            raise BackupError(f"{MANIFEST}: {entry.name!r} is not a plain file name")
        path = source / entry.name
        if not path.exists():
            raise BackupError(f"{path}: missing")
        if path.stat().st_size != entry.bytes or _sha256(path) != entry.sha256:
            raise BackupError(f"{path}: does not match the manifest (damaged or changed)")
    return manifest


def restore(source: Path, data_dir: Path, *, force: bool = False,
            progress: Progress = print) -> Manifest:
    manifest = verify(source)
    with data_directory_lock(data_dir):
        present = _platform_files(data_dir)
        if present and not force:
            raise BackupError(f"{data_dir} already holds {', '.join(p.name for p in present)}:"
                              " restoring would replace them (--force to do so)")
        staged = []
        for entry in manifest.files:
            staging = data_dir / f"{entry.name}.restoring"
            shutil.copyfile(source / entry.name, staging)
            if entry.kind == "key":
                staging.chmod(0o600)
            _fsync(staging)
            staged.append((staging, data_dir / entry.name))
        if present:
            aside = _move_aside(data_dir, present)
            progress(f"[restore] the directory's data before the restore: {aside}")
        for staging, target in staged:
            os.replace(staging, target)
            progress(f"[restore] {target.name}")
        _fsync_directory(data_dir)
    progress(f"[restore] {len(manifest.files)} files from the backup of {manifest.created_at}")
    return manifest


def _platform_files(data_dir: Path) -> list[Path]:
    """What a restore replaces: the databases, their -wal and -shm journals (one left beside
    a restored file would be replayed onto it), the key."""
    found = [path for pattern in ("*.db", "*.db-wal", "*.db-shm", KEY_FILE)
             for path in data_dir.glob(pattern)]
    return sorted(found)


def _move_aside(data_dir: Path, files: list[Path]) -> Path:
    """Moves `files` into a folder of their own: a restore destroys nothing."""
    aside = data_dir / f"before-restore-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    aside.mkdir()
    for path in files:
        os.replace(path, aside / path.name)
    _fsync_directory(data_dir)
    return aside


def _backup_database(path: Path, destination: Path, progress: Progress) -> BackedUpFile:
    partial = destination / f"{path.name}.partial"
    partial.unlink(missing_ok=True)  # an earlier, interrupted attempt's

    reported = [-1]  # the last tenth reported: a large file reports ten times, not per step

    def report(_status: int, remaining: int, total: int) -> None:
        done = 100 * (total - remaining) // total if total else 100
        if done // 10 > reported[0]:
            reported[0] = done // 10
            progress(f"[backup] {path.name}: {done}% of {total:,} pages")

    source = sqlite3.connect(path)  # only read; read-only opens of WAL files are fussy
    target = sqlite3.connect(partial)
    try:
        source.backup(target, pages=PAGES_PER_STEP, progress=report)
        (verdict,) = target.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"{path.name}: the copy fails SQLite's check: {verdict}")
    finally:
        target.close()
        source.close()
    _fsync(partial)
    final = destination / path.name
    os.replace(partial, final)
    return BackedUpFile(path.name, "sqlite", final.stat().st_size, _sha256(final))


def _copy_file(path: Path, target: Path, kind: str) -> BackedUpFile:
    _write_atomically(target, path.read_bytes(), mode=0o600)
    return BackedUpFile(path.name, kind, target.stat().st_size, _sha256(target))


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    partial = path.with_name(f"{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        _flush(handle)
    os.replace(partial, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _flush(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    with path.open("rb+") as handle:
        _flush(handle)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    from agritrace_kernel.config import ConfigError, load_settings

    parser = argparse.ArgumentParser(prog="python -m agritrace_platform.backup",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create", help="back up the data directory").add_argument(
        "destination", type=Path)
    commands.add_parser("verify", help="check a backup against its manifest").add_argument(
        "source", type=Path)
    restoring = commands.add_parser("restore", help="restore a backup into the data directory")
    restoring.add_argument("source", type=Path)
    restoring.add_argument("--force", action="store_true",
                           help="replace the databases the data directory holds")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        if args.command == "verify":
            manifest = verify(args.source)
            print(f"{args.source}: {len(manifest.files)} files match the manifest of "
                  f"{manifest.created_at}")
            return 0
        if not settings.embedded:
            raise BackupError("AGRITRACE_DATABASE_URL is set: the data is in that database; "
                              "back it up with PostgreSQL's tools (pg_dump per service schema)")
        if args.command == "create":
            create(settings.data_dir, args.destination)
        else:
            restore(args.source, settings.data_dir, force=args.force)
    except BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
