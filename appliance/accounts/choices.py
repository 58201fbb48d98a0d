from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    PLATFORM_ADMIN = "platform_admin", _("Platform admin")
    DEPARTMENT_ADMIN = "department_admin", _("Department admin")
    MEMBER = "member", _("Member")
    AUDITOR = "auditor", _("Auditor")


class LoginResult(models.TextChoices):
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")
    BLOCKED = "blocked", _("Blocked")


API_KEY_PREFIX = "ak"
API_KEY_PREFIX_LENGTH = 8
