# The engine images moved out of deployments into their own app. Only the migration state moves: the
# tables keep their names (db_table) and their rows, so nothing is done to the database but renaming the
# models' content types, so that their permissions follow them.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MOVED = ("engineimage", "imageimport", "nodeimage")


def move_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="images", model__in=MOVED).exists():
        ContentType.objects.filter(app_label="deployments", model__in=MOVED).update(app_label="images")


def restore_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="deployments", model__in=MOVED).exists():
        ContentType.objects.filter(app_label="images", model__in=MOVED).update(app_label="deployments")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("deployments", "0005_instance_model_claim"),
        ("gpus", "0002_gpuquota_max_containers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='EngineImage',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('engine', models.CharField(max_length=16, unique=True)),
                        ('image', models.CharField(max_length=255)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'deployments_engineimage',
                    },
                ),
                migrations.CreateModel(
                    name='ImageImport',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('path', models.CharField(max_length=512)),
                        ('size_bytes', models.PositiveBigIntegerField(default=0)),
                        ('sha256', models.CharField(blank=True, max_length=64)),
                        ('state', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], db_index=True, default='pending', max_length=16)),
                        ('bytes_read', models.PositiveBigIntegerField(default=0)),
                        ('progress', models.PositiveSmallIntegerField(default=0)),
                        ('loaded_tags', models.JSONField(blank=True, default=list)),
                        ('error', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('node', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='gpus.node')),
                    ],
                    options={
                        'db_table': 'deployments_imageimport',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='NodeImage',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('tag', models.CharField(max_length=255)),
                        ('image_id', models.CharField(max_length=80)),
                        ('size_bytes', models.PositiveBigIntegerField(default=0)),
                        ('created', models.CharField(blank=True, max_length=64)),
                        ('seen_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('node', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='images', to='gpus.node')),
                    ],
                    options={
                        'db_table': 'deployments_nodeimage',
                        'ordering': ['node__name', 'tag'],
                        'constraints': [models.UniqueConstraint(fields=('node', 'tag'), name='deployments_node_image_tag')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, restore_content_types),
    ]
