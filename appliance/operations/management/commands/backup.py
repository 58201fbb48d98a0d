from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from appliance.operations.backup import create_backup, prune
from appliance.operations.dbtools import DatabaseToolError


class Command(BaseCommand):
    help = "Write a backup archive (database dump, audit head, configuration without secrets, signed manifest)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", default=settings.APPLIANCE_BACKUP_DIR, help="where to write the archive")
        parser.add_argument("--keep", type=int, default=None, help="then delete all but the newest N archives")

    def handle(self, *args: Any, **options: Any) -> None:
        directory = Path(options["dir"])
        try:
            result = create_backup(directory)
        except DatabaseToolError as exc:
            self.stderr.write(str(exc))
            raise SystemExit(1) from exc
        head = result.manifest["audit_head"]["seq"]
        self.stdout.write(f"backup written: {result.path} (audit head #{head})")
        if options["keep"] is not None:
            for path in prune(directory, options["keep"]):
                self.stdout.write(f"deleted old backup {path.name}")
