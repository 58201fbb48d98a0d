"""Where a sign-in comes from, and the rule value that matches every user of a source."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Source(models.TextChoices):
    LDAP = "ldap", _("LDAP / Active Directory")
    OIDC = "oidc", _("OIDC single sign-on")


# A rule with this value matches every user of its source (a catch-all at the end of the list).
MATCH_ANY = "*"
# LDAP rules match the DN of a group the user belongs to; they name no claim.
LDAP_GROUP_CLAIM = ""
