"""Backups of the all-in-one platform's data directory (agritrace_platform.backup): real SQLite
files, a writer holding them open, damaged backups, a running platform's lock; then the whole
platform backed up while it serves, restored into a new directory and started again."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from agritrace_platform import backup
from agritrace_platform.backup import BackupError, data_directory_lock


def quiet(_line: str) -> None:
    pass


def make_database(path: Path, rows: int) -> sqlite3.Connection:
    """A WAL database, as the services keep theirs, left open: its newest rows may be in the
    -wal file only."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS facts (n INTEGER PRIMARY KEY, name TEXT)")
    connection.executemany("INSERT INTO facts (name) VALUES (?)",
                           [(f"事实 {n}",) for n in range(rows)])
    return connection


def count(path: Path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        (found,) = connection.execute("SELECT count(*) FROM facts").fetchone()
    return int(found)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "var"
    directory.mkdir()
    registry = make_database(directory / "registry.db", 2_000)
    bridge = make_database(directory / "province-bridge-37.db", 30)
    (directory / "pii.key").write_text("a-key")
    (directory / "pii.key").chmod(0o600)
    yield directory
    registry.close()
    bridge.close()


def test_a_backup_restores_every_database_and_the_key(data_dir: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    manifest = backup.create(data_dir, tmp_path / "b1", lines.append)
    assert [(f.name, f.kind) for f in manifest.files] == [
        ("province-bridge-37.db", "sqlite"), ("registry.db", "sqlite"), ("pii.key", "key")]
    assert any(line.startswith("[backup] registry.db: 100%") for line in lines)
    # Written while the databases were open, their newest rows in the -wal files: all there.
    restored = tmp_path / "restored"
    backup.restore(tmp_path / "b1", restored, progress=quiet)
    assert count(restored / "registry.db") == 2_000
    assert count(restored / "province-bridge-37.db") == 30
    assert (restored / "pii.key").read_text() == "a-key"
    assert stat.S_IMODE((restored / "pii.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b1" / "pii.key").stat().st_mode) == 0o600


def test_a_damaged_backup_is_refused_before_anything_is_touched(data_dir: Path,
                                                                tmp_path: Path) -> None:
    backup.create(data_dir, tmp_path / "b1", quiet)
    copy = tmp_path / "b1" / "registry.db"
    damaged = bytearray(copy.read_bytes())
    damaged[-100] ^= 0xFF
    copy.write_bytes(bytes(damaged))
    target = tmp_path / "elsewhere"
    with pytest.raises(BackupError, match="does not match the manifest"):
        backup.restore(tmp_path / "b1", target, progress=quiet)
    assert not target.exists() or not list(target.iterdir())
    backup.create(data_dir, tmp_path / "b2", quiet)
    (tmp_path / "b2" / "pii.key").unlink()
    with pytest.raises(BackupError, match="missing"):
        backup.verify(tmp_path / "b2")


def test_a_manifest_naming_a_path_outside_the_backup_is_refused(data_dir: Path,
                                                                tmp_path: Path) -> None:
    backup.create(data_dir, tmp_path / "b1", quiet)
    manifest_path = tmp_path / "b1" / backup.MANIFEST
    raw = json.loads(manifest_path.read_text())
    raw["files"][0]["name"] = "../escape.db"
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(BackupError, match="not a plain file name"):
        backup.verify(tmp_path / "b1")


def test_an_unfinished_backup_is_no_backup_and_its_retry_finishes_it(data_dir: Path,
                                                                     tmp_path: Path) -> None:
    destination = tmp_path / "b1"
    destination.mkdir()
    (destination / "registry.db.partial").write_bytes(b"cut short")  # an interrupted run
    with pytest.raises(BackupError, match=r"no manifest\.json"):
        backup.verify(destination)
    backup.create(data_dir, destination, quiet)
    assert not list(destination.glob("*.partial"))
    assert len(backup.verify(destination).files) == 3
    with pytest.raises(BackupError, match="already holds a finished backup"):
        backup.create(data_dir, destination, quiet)


def test_restore_keeps_existing_data_unless_forced_and_never_under_a_platform(
        data_dir: Path, tmp_path: Path) -> None:
    backup.create(data_dir, tmp_path / "b1", quiet)
    target = tmp_path / "target"
    target.mkdir()
    # What a platform that crashed leaves: its file and the -wal holding its newest rows.
    crashed = make_database(target / "registry.db", 5)
    crashed.execute("PRAGMA wal_autocheckpoint=0")
    crashed.executemany("INSERT INTO facts (name) VALUES (?)", [("newest",)] * 3)
    journal = (target / "registry.db-wal").read_bytes()
    crashed.close()
    (target / "registry.db-wal").write_bytes(journal)
    assert count(target / "registry.db") == 8
    with pytest.raises(BackupError, match="--force"):
        backup.restore(tmp_path / "b1", target, progress=quiet)
    assert count(target / "registry.db") == 8
    with data_directory_lock(target), pytest.raises(BackupError, match="running platform"):
        backup.restore(tmp_path / "b1", target, force=True, progress=quiet)
    (target / "registry.db-wal").write_bytes(journal)  # as the crash left it
    make_database(target / "flow.db", 7).close()  # a database the backup does not have
    lines: list[str] = []
    backup.restore(tmp_path / "b1", target, force=True, progress=lines.append)
    # The replaced file's journal is gone (replayed onto the restored file it would corrupt
    # it), and so is the database the backup lacks: both moved aside, nothing destroyed.
    assert not (target / "registry.db-wal").exists()
    assert not list(target.glob("*.db-shm"))
    assert not (target / "flow.db").exists()
    assert count(target / "registry.db") == 2_000
    (aside,) = target.glob("before-restore-*")
    assert any(str(aside) in line for line in lines)
    assert {"flow.db", "registry.db", "registry.db-wal"} <= {p.name for p in aside.iterdir()}
    assert count(aside / "registry.db") == 8
    assert count(aside / "flow.db") == 7


def test_a_key_kept_elsewhere_is_said_plainly(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "pii.key").unlink()
    lines: list[str] = []
    manifest = backup.create(data_dir, tmp_path / "b1", lines.append)
    assert [f.kind for f in manifest.files] == ["sqlite", "sqlite"]
    assert any("no pii.key here" in line for line in lines)


def test_nothing_to_back_up_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no databases"):
        backup.create(tmp_path / "empty", tmp_path / "b1", quiet)


@pytest.mark.integration
def test_the_running_platform_backed_up_restored_and_started_again(tmp_path: Path) -> None:
    from agritrace_testing.platform_client import start_all_in_one

    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    process, client = start_all_in_one(tmp_path / "first")
    try:
        client.connect()
        regulator = client.create_regulator("37")
        env = {"AGRITRACE_DATA_DIR": str(tmp_path / "first" / "var")}
        backed_up = run_backup(env, "create", str(tmp_path / "backup"))
        assert backed_up.returncode == 0, backed_up.stderr
        # The same directory cannot serve a second platform, nor be restored into.
        refused = run_backup(env, "restore", str(tmp_path / "backup"), "--force")
        assert refused.returncode == 1 and "running platform" in refused.stderr
        second_platform = subprocess.run(
            [sys.executable, "-m", "agritrace_platform"], capture_output=True, text=True,
            timeout=60, check=False, env={**clean_environment(), **env,
                                          "AGRITRACE_GRPC_ADDRESS": "127.0.0.1:0"})
        assert second_platform.returncode == 2
        assert "in use by a running platform" in second_platform.stderr
    finally:
        client.close_channels()
        process.terminate()
        process.wait(timeout=30)
    checked = run_backup({}, "verify", str(tmp_path / "backup"))
    assert checked.returncode == 0 and "match the manifest" in checked.stdout
    restored = run_backup({"AGRITRACE_DATA_DIR": str(tmp_path / "second" / "var")},
                          "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr

    # Started on the restored directory, with the first one's administrator password: the
    # accounts are back (the regulator signs in), and so is the personal-data key.
    key = (tmp_path / "first" / "var" / "pii.key").read_bytes()
    assert (tmp_path / "second" / "var" / "pii.key").read_bytes() == key
    process, second = start_all_in_one(tmp_path / "second")
    try:
        second.admin_password = client.admin_password
        second.connect()
        assert second.login(regulator, client.user_password)
    finally:
        second.close_channels()
        process.terminate()
        process.wait(timeout=30)


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGRITRACE_")}


def run_backup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agritrace_platform.backup", *args],
                          env={**clean_environment(), **env}, capture_output=True, text=True,
                          timeout=120, check=False)
