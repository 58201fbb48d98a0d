from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from appliance.accounts.choices import Role


class LoginForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150)
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput, max_length=128)


class DepartmentForm(forms.Form):
    code = forms.CharField(label=_("Code"), max_length=64)
    name = forms.CharField(label=_("Name"), max_length=128)
    parent_id = forms.TypedChoiceField(label=_("Parent"), coerce=int, required=False, empty_value=None)


class UserForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150)
    display_name = forms.CharField(label=_("Display name"), max_length=128, required=False)
    department_id = forms.TypedChoiceField(label=_("Department"), coerce=int, required=False, empty_value=None)
    # Least privilege by default: a new account is a member unless someone chooses more.
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER)
    password = forms.CharField(label=_("Initial password"), widget=forms.PasswordInput, required=False, max_length=128)
    is_service_account = forms.BooleanField(label=_("Service account (API keys only)"), required=False)


class UserEditForm(forms.Form):
    display_name = forms.CharField(label=_("Display name"), max_length=128, required=False)
    email = forms.EmailField(label=_("Email"), required=False)
    department_id = forms.TypedChoiceField(label=_("Department"), coerce=int, required=False, empty_value=None)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)
    is_active = forms.BooleanField(label=_("Active (may log in and use keys)"), required=False)


class PasswordResetForm(forms.Form):
    new_password = forms.CharField(label=_("New password"), widget=forms.PasswordInput, max_length=128)


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    user_id = forms.TypedChoiceField(label=_("For"), coerce=int, required=False, empty_value=None)
    expires_at = forms.DateTimeField(
        label=_("Expires at"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    can_create_keys = forms.BooleanField(label=_("May create further keys"), required=False)


class PasswordForm(forms.Form):
    old_password = forms.CharField(label=_("Current password"), widget=forms.PasswordInput, max_length=128)
    new_password = forms.CharField(label=_("New password"), widget=forms.PasswordInput, max_length=128)


def set_choices(form: forms.Form, field: str, choices: list[tuple[str | int, str]]) -> None:
    """Choices that depend on the user (departments they manage) are set per request."""
    target = form.fields[field]
    assert isinstance(target, forms.ChoiceField)
    target.choices = choices
