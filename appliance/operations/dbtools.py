"""The database's own tools, for a consistent dump and its load (MariaDB/MySQL; SQLite for development).

Why mysqldump rather than Django's ``dumpdata``: ``--single-transaction`` reads every InnoDB table
in one REPEATABLE READ snapshot without blocking writers, so the dump is one instant of the whole
database while the console keeps serving; ``dumpdata`` reads table after table (a usage drain or an
audit write in between gives a dump that never existed), holds each table in memory, and its
``loaddata`` goes row by row through the ORM. A SQL dump also keeps ids, AUTO_INCREMENT counters
and the schema exactly, and an operator can load it with the plain ``mysql`` client.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection

DUMP_OPTIONS = (
    "--single-transaction",  # one consistent snapshot, writers not blocked (InnoDB)
    "--quick",  # row by row, not whole tables in memory
    "--routines",
    "--triggers",
    "--hex-blob",
    "--no-tablespaces",  # needs no PROCESS privilege
    "--default-character-set=utf8mb4",
    "--skip-dump-date",
)


class DatabaseToolError(Exception):
    pass


def vendor() -> str:
    return connection.vendor


@contextmanager
def _defaults_file(db: dict[str, Any]) -> Iterator[str]:
    """Credentials in a 0600 option file, so the password never shows in ``ps``."""
    lines = ["[client]", f"user={db.get('USER') or 'root'}", f"host={db.get('HOST') or '127.0.0.1'}"]
    if db.get("PASSWORD"):
        lines.append(f"password={db['PASSWORD']}")
    if db.get("PORT"):
        lines.append(f"port={db['PORT']}")
    fd, path = tempfile.mkstemp(prefix="console-db-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.unlink(path)


def _run(command: list[str], **kwargs: Any) -> None:
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    # A fixed program (mysqldump, mysql) with arguments from settings, no shell.
    result = subprocess.run(command, stderr=subprocess.PIPE, check=False, **kwargs)  # noqa: S603
    if result.returncode != 0:
        raise DatabaseToolError(f"{command[0]} failed: {result.stderr.decode(errors='replace').strip()}")


def dump(path: Path) -> str:
    """Write the whole database to ``path`` as SQL; returns the tool used, with its version."""
    db = connection.settings_dict
    if vendor() == "sqlite":
        source = sqlite3.connect(db["NAME"])
        try:
            path.write_text("\n".join(source.iterdump()) + "\n", encoding="utf-8")
        finally:
            source.close()
        return f"sqlite3 iterdump {sqlite3.sqlite_version}"
    with _defaults_file(db) as options, path.open("wb") as out:
        _run(["mysqldump", f"--defaults-extra-file={options}", *DUMP_OPTIONS, db["NAME"]], stdout=out)
    return tool_version("mysqldump")


def load(path: Path) -> None:
    db = connection.settings_dict
    connection.close()
    if vendor() == "sqlite":
        target = sqlite3.connect(db["NAME"])
        try:
            target.executescript(path.read_text(encoding="utf-8"))
        finally:
            target.close()
        return
    with _defaults_file(db) as options, path.open("rb") as dump_file:
        _run(
            ["mysql", f"--defaults-extra-file={options}", "--default-character-set=utf8mb4", db["NAME"]],
            stdin=dump_file,
        )


def drop_all_tables() -> None:
    """Empty the database (the restore loads into an empty schema, then migrates it to this version)."""
    tables = connection.introspection.table_names()
    with connection.cursor() as cursor:
        if vendor() == "sqlite":
            cursor.execute("PRAGMA foreign_keys = OFF")
            for table in tables:
                cursor.execute(f'DROP TABLE IF EXISTS "{table}"')
            return
        cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for table in tables:
                cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
        finally:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")


def server_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_version()" if vendor() == "sqlite" else "SELECT VERSION()")
        return str(cursor.fetchone()[0])


def tool_version(tool: str) -> str:
    result = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    return result.stdout.strip() or tool
