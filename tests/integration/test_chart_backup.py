"""The Helm chart's PostgreSQL backup script (deploy/helm/agritrace/files/backup/pg-backup.sh),
run as the backup CronJob runs it, against the machine's real PostgreSQL: dumps that restore,
retention, no half-written dump left looking like a backup, no password printed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agritrace_testing.postgres import throwaway_database

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "helm" / "agritrace" / "files" / "backup" / "pg-backup.sh"
PASSWORD = "not-to-be-printed"  # trust auth accepts any password; the script must not show it

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
                       reason="needs PostgreSQL's client tools (pg_dump, pg_restore)"),
]


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture()
def database() -> Iterator[str]:
    """A database shaped like the platform's: a schema per service, rows in each."""
    with throwaway_database("agritrace_backup") as url:
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA registry")
            conn.execute("CREATE TABLE registry.subjects (subject_id text PRIMARY KEY, "
                         "name text NOT NULL, resident_id_sealed text)")
            conn.execute("INSERT INTO registry.subjects SELECT 'S37' || n, '合作社 ' || n, "
                         "'v1:sealed' || n FROM generate_series(1, 500) AS n")
            conn.execute("CREATE SCHEMA province_bridge_37")
            conn.execute("CREATE TABLE province_bridge_37.cursors (name text PRIMARY KEY, "
                         "position bigint NOT NULL)")
            conn.execute("INSERT INTO province_bridge_37.cursors VALUES ('inbound', 42)")
        yield url.replace("postgres@", f"postgres:{PASSWORD}@")


def _backup(url: str | None, directory: Path, keep: str = "2",
            check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "BACKUP_DIR": str(directory), "BACKUP_KEEP": keep}
    if url is not None:
        env["AGRITRACE_DATABASE_URL"] = url
    done = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _dumps(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("agritrace-*.dump"))


def test_dumps_restore_and_only_the_newest_are_kept(database: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    outputs = [_backup(database, backups) for _ in range(3)]
    for done in outputs:
        assert PASSWORD not in done.stdout + done.stderr
        assert "complete" in done.stdout
        assert "dumping contents of table" in done.stderr  # pg_dump's progress
    assert "removed" in outputs[2].stdout
    dumps = _dumps(backups)
    assert len(dumps) == 2
    assert sorted(p.name for p in backups.iterdir()) == sorted(
        dumps + [f"{name}.sha256" for name in dumps])  # no partial file, nothing else
    for name in dumps:
        digest, listed = (backups / f"{name}.sha256").read_text().split()
        assert listed == name
        assert digest == hashlib.sha256((backups / name).read_bytes()).hexdigest()
        # As the chart's README says to check a dump before restoring it.
        subprocess.run(["sha256sum", "-c", f"{name}.sha256"], cwd=backups, check=True,
                       capture_output=True)

    with throwaway_database("agritrace_restored") as restored:
        subprocess.run(["pg_restore", "--no-owner", "--dbname", _libpq(restored),
                        str(backups / dumps[-1])], check=True, capture_output=True)
        with psycopg.connect(_libpq(restored)) as conn:
            assert conn.execute("SELECT count(*), min(name) FROM registry.subjects"
                                ).fetchone() == (500, "合作社 1")
            assert conn.execute("SELECT position FROM province_bridge_37.cursors"
                                ).fetchone() == (42,)

    # The chart README's restore over the live database (services stopped): what changed since
    # the dump is undone.
    live = _libpq(database)
    with psycopg.connect(live, autocommit=True) as conn:
        conn.execute("DELETE FROM registry.subjects WHERE subject_id <> 'S371'")
        conn.execute("UPDATE province_bridge_37.cursors SET position = 99")
    subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={live}",
                    str(backups / dumps[-1])], check=True, capture_output=True)
    with psycopg.connect(live) as conn:
        assert conn.execute("SELECT count(*) FROM registry.subjects").fetchone() == (500,)
        assert conn.execute("SELECT position FROM province_bridge_37.cursors"
                            ).fetchone() == (42,)


def test_a_failed_dump_leaves_the_kept_ones_and_no_half_written_file(
        database: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    _backup(database, backups, keep="1")
    kept = _dumps(backups)
    gone = database.rsplit("/", 1)[0] + "/no_such_database"
    failed = _backup(gone, backups, keep="1", check=False)
    assert failed.returncode != 0
    assert PASSWORD not in failed.stdout + failed.stderr
    assert _dumps(backups) == kept
    leftover = backups / ".agritrace-20260101T000000Z.dump.partial"
    assert list(backups.glob(".*.partial"))  # the failed run's partial file...
    leftover.write_bytes(b"an interrupted run")
    _backup(database, backups, keep="1")
    assert not list(backups.glob(".*.partial"))  # ...removed by the next run
    assert len(_dumps(backups)) == 1 and _dumps(backups) != kept


@pytest.mark.parametrize("keep", ["0", "-1", "seven"])
def test_bad_settings_are_refused_before_anything_is_written(
        database: str, tmp_path: Path, keep: str) -> None:
    backups = tmp_path / "backups"
    refused = _backup(database, backups, keep=keep, check=False)
    assert refused.returncode == 2 and "BACKUP_KEEP" in refused.stderr
    refused = _backup(None, backups, check=False)
    assert refused.returncode == 2 and "AGRITRACE_DATABASE_URL" in refused.stderr
    assert not backups.exists()
