from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts.models import User
from appliance.accounts.services import create_platform_admin
from appliance.core.exceptions import ServiceError


class Command(BaseCommand):
    help = "Create a platform admin. Password from CONSOLE_ADMIN_PASSWORD, else generated and printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--if-missing", action="store_true", help="do nothing when the user already exists")

    def handle(self, *args: Any, username: str, if_missing: bool, **options: Any) -> None:
        if if_missing and User.objects.filter(username=username).exists():
            self.stdout.write(f"Platform admin {username!r} already exists.")
            return
        try:
            _user, generated = create_platform_admin(username, os.environ.get("CONSOLE_ADMIN_PASSWORD"))
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Created platform admin {username!r}."))
        if generated:
            self.stdout.write(f"Generated password (shown once): {generated}")
