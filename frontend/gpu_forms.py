from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class AssignForm(forms.Form):
    """The assignment dialog: what to do with the units ticked on the grid."""

    ACTIONS = (("assign", _("Assign to a department")), ("move", _("Move to a department")), ("release", _("Release")))

    action = forms.ChoiceField(label=_("Action"), choices=ACTIONS)
    units = forms.TypedMultipleChoiceField(label=_("Units"), coerce=int)
    department_id = forms.TypedChoiceField(label=_("Department"), coerce=int, required=False, empty_value=None)
    force = forms.BooleanField(label=_("Force: stop deployments holding these units"), required=False)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("action") in ("assign", "move") and not data.get("department_id"):
            self.add_error("department_id", _("Choose a department."))
        return data


class QuotaForm(forms.Form):
    department_id = forms.TypedChoiceField(label=_("Department"), coerce=int)
    max_units = forms.IntegerField(label=_("Max units"), min_value=0, required=False, help_text=_("Empty: no limit."))
    max_memory_gib = forms.IntegerField(
        label=_("Max GPU memory (GiB)"), min_value=0, required=False, help_text=_("Empty: no limit.")
    )


class MaintenanceForm(forms.Form):
    enabled = forms.BooleanField(required=False)
    reason = forms.CharField(label=_("Reason"), max_length=255, required=False)
