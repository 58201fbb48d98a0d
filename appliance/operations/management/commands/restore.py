from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from appliance.operations.dbtools import DatabaseToolError
from appliance.operations.restore import RestoreError, restore_backup


class Command(BaseCommand):
    help = "Replace the database with a backup archive, after checking its signature and checksums; then migrate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path)
        parser.add_argument("--yes", action="store_true", help="do not ask before replacing the database")

    def handle(self, *args: Any, **options: Any) -> None:
        archive: Path = options["archive"]
        name = connection.settings_dict["NAME"]
        if not options["yes"] and input(f"Replace database {name} with {archive.name}? [y/N] ").lower() != "y":
            self.stderr.write("not restored")
            raise SystemExit(1)
        try:
            report = restore_backup(archive)
        except (RestoreError, DatabaseToolError) as exc:
            self.stderr.write(f"restore failed: {exc}")
            raise SystemExit(1) from exc
        self.stdout.write(f"restored {archive.name} (written {report.manifest['created_at']})")
        self.stdout.write(f"audit chain OK: {report.chain_count} records")
        for table, (expected, found) in sorted(report.differences.items()):
            self.stdout.write(f"  {table}: {found} rows ({expected} counted just before the dump)")
