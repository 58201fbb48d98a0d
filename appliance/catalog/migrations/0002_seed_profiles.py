"""Seed the vendor's three tiers and the live CPU profile (see appliance/catalog/seeds.py)."""

from typing import Any

from django.db import migrations

from appliance.catalog.seeds import seed_profiles


def forwards(apps: Any, schema_editor: Any) -> None:
    seed_profiles(apps.get_model("catalog", "Profile"), apps.get_model("catalog", "ProfileVersion"))


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
