"""Content-safety pages: word lists (admins) and the hits (admins of the department, auditors)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from appliance.accounts.models import Department, acting_user
from appliance.core.exceptions import InvalidInput, ServiceError
from appliance.core.querysets import CHANGE, VIEW
from appliance.safety import labels, services
from appliance.safety.choices import Action, Channel, Stage
from appliance.safety.models import SafetyHit, WordList
from appliance.safety.permissions import may_change_safety, may_manage_platform_safety, may_see_platform_safety
from frontend.forms import set_choices

HIT_FILTERS = {"action": Action, "stage": Stage, "channel": Channel}


class WordListForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    department = forms.TypedChoiceField(label=gettext_lazy("Applies to"), coerce=int, required=False,
                                        empty_value=None)  # fmt: skip


class AiLabelForm(forms.Form):
    department = forms.TypedChoiceField(label=gettext_lazy("Department"), coerce=int, required=False,
                                        empty_value=None)  # fmt: skip
    enabled = forms.BooleanField(label=gettext_lazy("Show the AI-generated label"), required=False)


class ImportForm(forms.Form):
    text = forms.CharField(label=gettext_lazy("Words, one a line"), required=False, strip=False,
                           widget=forms.Textarea(attrs={"rows": 4}))  # fmt: skip
    file = forms.FileField(label=gettext_lazy("Or a UTF-8 text file"), required=False)
    default_action = forms.ChoiceField(label=gettext_lazy("Action of words without one"), choices=Action.choices)
    replace = forms.BooleanField(label=gettext_lazy("Replace the list's words"), required=False)

    def words(self) -> str:
        upload = self.cleaned_data.get("file")
        if upload is None:
            return str(self.cleaned_data.get("text") or "")
        try:
            return str(upload.read().decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise InvalidInput(_("The file is not UTF-8 text.")) from None


@login_required
def word_lists(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    form = WordListForm(request.POST or None)
    platform = [("", _("Everyone (platform-wide)"))] if may_manage_platform_safety(user) else []
    set_choices(form, "department", [*platform, *[(d.pk, d.name) for d in user.managed_departments()]])
    if request.method == "POST" and form.is_valid():
        try:
            services.create_list(user, name=form.cleaned_data["name"], department_id=form.cleaned_data["department"])
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("word-lists")
    rows = list(WordList.objects.restrict(user, VIEW).select_related("department").annotate(size=Count("rules")))
    changeable = set(WordList.objects.restrict(user, CHANGE).values_list("pk", flat=True))
    label_form = AiLabelForm(initial={"department": user.department_id, "enabled": True})
    set_choices(label_form, "department", list(form.fields["department"].choices))  # type: ignore[attr-defined]
    departments: list[tuple[int | None, str]] = []
    if may_see_platform_safety(user):
        departments.append((None, _("Everyone (platform-wide)")))
    departments += [(d.pk, d.name) for d in Department.objects.restrict(user, VIEW)]
    shown = [(name, labels.shown_for(pk)) for pk, name in departments]
    context = {
        "form": form, "rows": rows, "changeable": changeable, "import_form": ImportForm(), "label_form": label_form,
        "labels": shown, "can_change": may_change_safety(user),
    }  # fmt: skip
    return render(request, "console/word_lists.html", context)


@login_required
@require_POST
def word_list_import(request: HttpRequest, pk: int) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    try:
        if not form.is_valid():
            raise InvalidInput(_("Check the import form."))
        data = form.cleaned_data
        result = services.import_words(
            acting_user(request), pk, form.words(), default_action=data["default_action"], replace=data["replace"]
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        values = {"added": result.added, "updated": result.updated, "total": result.total}
        messages.success(request, _("%(added)d words added, %(updated)d changed; %(total)d in the list.") % values)
    return redirect("word-lists")


@login_required
@require_POST
def ai_label(request: HttpRequest) -> HttpResponse:
    form = AiLabelForm(request.POST)
    user = acting_user(request)
    platform = [("", "")] if may_manage_platform_safety(user) else []
    set_choices(form, "department", [*platform, *[(d.pk, d.name) for d in user.managed_departments()]])
    try:
        if not form.is_valid():
            raise InvalidInput(_("You may not change the AI label of this department."))
        labels.set_shown(user, form.cleaned_data["department"], form.cleaned_data["enabled"])
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("AI-generated label saved."))
    return redirect("word-lists")


@login_required
@require_POST
def word_list_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        current = WordList.objects.restrict(acting_user(request), CHANGE).filter(pk=pk).first()
        services.update_list(acting_user(request), pk, enabled=not (current is not None and current.enabled))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("word-lists")


@login_required
@require_POST
def word_list_delete(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.delete_list(acting_user(request), pk)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Word list deleted."))
    return redirect("word-lists")


@login_required
def safety_hits(request: HttpRequest) -> HttpResponse:
    qs = SafetyHit.objects.restrict(acting_user(request), VIEW)
    for name, choices in HIT_FILTERS.items():
        if request.GET.get(name) in choices.values:
            qs = qs.filter(**{name: request.GET[name]})
    for name, lookup in (("since", "created_at__date__gte"), ("until", "created_at__date__lte")):
        value = forms.DateField(required=False).clean(request.GET.get(name) or None) if request.GET.get(name) else None
        if value is not None:
            qs = qs.filter(**{lookup: value})
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    filters = [(name, choices.choices, request.GET.get(name, "")) for name, choices in HIT_FILTERS.items()]
    context = {"page": page, "query": query.urlencode(), "filters": filters}
    return render(request, "console/safety_hits.html", context)
