# The engine images moved to the images app (images/0001_initial.py): forget them here without touching
# their tables, which the images app now owns under the same names.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0005_instance_model_claim"),
        ("images", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="EngineImage"),
                migrations.RemoveField(model_name="nodeimage", name="node"),
                migrations.DeleteModel(name="ImageImport"),
                migrations.DeleteModel(name="NodeImage"),
            ],
            database_operations=[],
        ),
    ]
