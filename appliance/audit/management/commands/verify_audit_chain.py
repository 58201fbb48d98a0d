from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from appliance.audit.services import verify_chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain. Exit 0 with the count, or 1 naming the first bad record."

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain()
        if report.ok:
            self.stdout.write(f"audit chain OK: {report.count} records")
            return
        self.stderr.write(f"audit chain BROKEN at record #{report.first_bad_seq}: {report.problem}")
        raise SystemExit(1)
