"""Image tasks. ``import_image`` runs on the queue of the node whose Docker engine loads the tarball;
it takes an id, claims its row and is a no-op on a second delivery. ``reap_imports`` runs from beat.
"""

from __future__ import annotations

from celery import shared_task

from appliance.images import loader


@shared_task(name="images.import_image", ignore_result=True, acks_late=True)
def import_image(import_id: int) -> str:
    return loader.run_import(import_id)


@shared_task(name="images.reap_imports", ignore_result=True)
def reap_imports() -> int:
    return loader.reap_stale()
