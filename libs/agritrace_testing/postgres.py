"""A PostgreSQL database of a test's own, on the machine's server at 127.0.0.1:5432 (trust
auth, user postgres)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def throwaway_database(prefix: str, *, skip_without: bool = False) -> Iterator[str]:
    """Creates a database named `prefix` plus a unique suffix, yields its SQLAlchemy URL, then
    drops it (WITH FORCE: a server process under test may still hold connections). With
    `skip_without`, no reachable PostgreSQL skips the test instead of failing it."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(ADMIN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        if skip_without:
            pytest.skip("no PostgreSQL at 127.0.0.1:5432")
        raise
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
