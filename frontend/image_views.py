"""The Images page: what each node has, the engine catalog with what is missing where, and imports.

The import form posts to ``/api/v1/images/import/`` from ``static/console/images.js`` (the upload shows
its own progress) and then polls ``/api/v1/images/imports/<id>/`` for the load's progress on the node.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from appliance.accounts.models import User, acting_user
from appliance.core.exceptions import PermissionDenied, ServiceError
from appliance.core.querysets import VIEW
from appliance.gpus.models import Node
from appliance.images import services as image_services
from appliance.images.choices import ImportState
from appliance.images.models import ImageImport, NodeImage
from appliance.images.permissions import may_manage_images

RECENT_IMPORTS = 20


class EngineImageForm(forms.Form):
    image = forms.CharField(label=gettext_lazy("Image tag"), max_length=255)


def _catalog(user: User) -> list[image_services.CatalogEntry]:
    try:
        return image_services.catalog(user)
    except PermissionDenied:
        return []


def _nodes_with_images(user: User) -> list[dict[str, Any]]:
    images: dict[int, list[NodeImage]] = {}
    for image in NodeImage.objects.restrict(user, VIEW).select_related("node"):
        images.setdefault(image.node_id, []).append(image)
    return [{"node": n, "images": images.get(n.pk, [])} for n in Node.objects.restrict(user, VIEW).order_by("name")]


@login_required
def images(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    context = {
        "nodes": _nodes_with_images(user),
        "catalog": _catalog(user),
        "imports": ImageImport.objects.restrict(user, VIEW).select_related("node", "created_by")[:RECENT_IMPORTS],
        "can_manage": may_manage_images(user),
        "import_dir": settings.APPLIANCE_IMAGE_IMPORT_DIR,
        "max_upload": settings.APPLIANCE_IMAGE_UPLOAD_MAX_BYTES,
        "preselect": request.GET.get("node", ""),
        "state_labels": {str(value): str(label) for value, label in ImportState.choices},
    }
    return render(request, "images/list.html", context)


@login_required
@require_POST
def engine_image(request: HttpRequest, engine: str) -> HttpResponse:
    form = EngineImageForm(request.POST)
    if form.is_valid():
        try:
            row = image_services.set_engine_image(acting_user(request), engine, form.cleaned_data["image"])
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("%(engine)s now runs %(image)s.") % {"engine": row.engine, "image": row.image})
    return redirect("images")
