"""The served processes' DATABASE_URL reads back as the test database, whatever the password holds."""

from __future__ import annotations

from typing import Any

from django.db import connection

from console.env import database_from_url
from tests.served import served_database_url


def test_a_password_with_url_characters_reads_back_unchanged(monkeypatch: Any) -> None:
    db = {**connection.settings_dict, "USER": "con sole", "PASSWORD": "p@ss:w/rd#1%", "HOST": "db.local"}
    monkeypatch.setattr(connection, "settings_dict", db)
    parsed = database_from_url("DATABASE_URL", served_database_url())
    assert (parsed["USER"], parsed["PASSWORD"], parsed["HOST"], parsed["NAME"]) == (
        "con sole",
        "p@ss:w/rd#1%",
        "db.local",
        db["NAME"],
    )
