from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.audit.services import verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit log: hash chain, signatures (APPLIANCE_AUDIT_KEY), and exported anchors. "
        "Exit 0 with the count, or 1 naming the first bad record."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchors",
            action="append",
            default=[],
            help="a file of exported anchors (or log lines holding them); default APPLIANCE_AUDIT_ANCHOR_FILE",
        )

    def handle(self, *args: Any, anchors: list[str], **options: Any) -> None:
        paths = [Path(p) for p in anchors]
        default = settings.APPLIANCE_AUDIT_ANCHOR_FILE
        if not paths and default and Path(default).exists():
            paths = [Path(default)]
        lines: list[str] = []
        for path in paths:
            try:
                lines.extend(path.read_text(encoding="utf-8").splitlines())
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc}") from None
        report = verify_chain(lines)
        if report.ok:
            self.stdout.write(f"audit chain OK: {report.count} records, {len(lines)} anchor lines")
            return
        where = f" at record #{report.first_bad_seq}" if report.first_bad_seq else ""
        self.stderr.write(f"audit chain BROKEN{where}: {report.problem}")
        raise SystemExit(1)
