from django.db import migrations


def create_head(apps, schema_editor):  # type: ignore[no-untyped-def]
    # The head row must exist before writers race: creating it on first use would let two
    # writers insert it at once and deadlock on the duplicate key.
    apps.get_model("audit", "AuditChainHead").objects.get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
