# Importing the Celery app here makes @shared_task and delay_on_commit use it in every process.
from workers.celery import app as celery_app

__all__ = ["celery_app"]
