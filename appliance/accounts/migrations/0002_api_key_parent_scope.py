import django.db.models.deletion
from django.db import migrations, models


def clear_staff_flags(apps, schema_editor):  # type: ignore[no-untyped-def]
    # Django's is_staff/is_superuser grant nothing in the console any more (the Django admin admits
    # platform admins by role); flags left by the former bootstrap would only be a spare key.
    apps.get_model("accounts", "User").objects.filter(is_superuser=True).update(is_superuser=False)
    apps.get_model("accounts", "User").objects.filter(is_staff=True).update(is_staff=False)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.AddField(model_name="apikey", name="can_create_keys", field=models.BooleanField(default=False)),
        migrations.AddField(
            model_name="apikey",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="children",
                to="accounts.apikey",
            ),
        ),
        migrations.RunPython(clear_staff_flags, migrations.RunPython.noop),
    ]
