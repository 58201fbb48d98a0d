"""Celery tasks, one module per app. ``app.autodiscover_tasks`` imports this package: import yours here."""

from workers.tasks import audit, chat, deployments, gpus, images, operations, usage

__all__ = ["audit", "chat", "deployments", "gpus", "images", "operations", "usage"]
