"""Sign-in rules page: platform admins map directory groups and OIDC claims to departments and roles."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from appliance.accounts.choices import Role
from appliance.accounts.models import Department, acting_user
from appliance.core.exceptions import ServiceError
from appliance.core.querysets import VIEW
from appliance.sso import services
from appliance.sso.choices import Source
from appliance.sso.models import MappingRule
from appliance.sso.permissions import may_manage_sign_in_rules, may_view_sign_in_rules
from frontend.forms import set_choices


class RuleForm(forms.Form):
    source = forms.ChoiceField(label=gettext_lazy("Source"), choices=Source.choices)
    claim = forms.CharField(
        label=gettext_lazy("Claim (OIDC)"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("e.g. groups or department; LDAP rules leave it empty."),
    )
    value = forms.CharField(label=gettext_lazy("Group DN or claim value"), max_length=512,
                            help_text=gettext_lazy("* matches every user of the source."))  # fmt: skip
    department_id = forms.TypedChoiceField(label=gettext_lazy("Department"), coerce=int, required=False,
                                           empty_value=None)  # fmt: skip
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=Role.choices, initial=Role.MEMBER)


@login_required
def sign_in_rules(request: HttpRequest) -> HttpResponse:
    user = acting_user(request)
    rules = MappingRule.objects.restrict(user, VIEW).select_related("department")
    if not (may_manage_sign_in_rules(user) or (may_view_sign_in_rules(user) and request.method == "GET")):
        raise PermissionDenied
    form = RuleForm(request.POST or None)
    set_choices(form, "department_id", [("", "—"), *[(d.pk, d.name) for d in Department.objects.all()]])
    if request.method == "POST" and form.is_valid():
        try:
            services.create_rule(user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Sign-in rule added."))
            return redirect("sign-in-rules")
    context = {
        "groups": [(label, [r for r in rules if r.source == value]) for value, label in Source.choices],
        "form": form,
        "ldap_on": settings.APPLIANCE_LDAP_ENABLED,
        "oidc_on": settings.APPLIANCE_OIDC_ENABLED,
        "can_manage": may_manage_sign_in_rules(user),
    }
    return render(request, "console/sign_in_rules.html", context)


@login_required
@require_POST
def sign_in_rule_action(request: HttpRequest, pk: int) -> HttpResponse:
    user = acting_user(request)
    if not may_manage_sign_in_rules(user):
        raise PermissionDenied
    verb = request.POST.get("action", "")
    try:
        if verb == "delete":
            services.delete_rule(user, pk)
            messages.success(request, _("Sign-in rule deleted."))
        elif verb in ("up", "down"):
            services.move_rule(user, pk, -1 if verb == "up" else 1)
        else:
            messages.error(request, _("Unknown action."))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("sign-in-rules")
