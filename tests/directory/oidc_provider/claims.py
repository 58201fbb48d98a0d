"""The claims this provider releases: the standard ones, and ``groups``/``department`` under scope ``org``.

The test provider keeps a user's department in ``last_name``; its Django groups are the ``groups`` claim."""

from __future__ import annotations

from typing import Any

from oidc_provider.lib.claims import ScopeClaims


def userinfo(claims: dict[str, Any], user: Any) -> dict[str, Any]:
    claims.update(name=user.first_name, preferred_username=user.username, email=user.email, email_verified=True)
    return claims


class OrganisationClaims(ScopeClaims):
    info_org = ("Organisation", "Your groups and department.")

    def scope_org(self) -> dict[str, Any]:
        return {"groups": sorted(g.name for g in self.user.groups.all()), "department": self.user.last_name}
