"""Which mapping rule applies to a user: pure functions over the rules and the values the user carries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from appliance.sso.choices import LDAP_GROUP_CLAIM, MATCH_ANY, Source
from appliance.sso.models import MappingRule


def normalise(source: str, value: str) -> str:
    """LDAP DNs compare without case or spacing (``CN=A, OU=B`` is ``cn=a,ou=b``); claim values without case."""
    text = value.strip()
    if source == Source.LDAP:
        import ldap.dn

        try:
            text = ldap.dn.dn2str(ldap.dn.str2dn(text))
        except ldap.DECODING_ERROR:
            pass
    return text.casefold()


def claim_values(source: str, claims: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each claim's values as a set of normalised strings (a claim may be one string or a list)."""
    values: dict[str, set[str]] = {}
    for name, raw in claims.items():
        items = raw if isinstance(raw, list | tuple | set) else [raw]
        values[name] = {normalise(source, str(item)) for item in items if isinstance(item, str | int)}
    return values


def ldap_claims(group_dns: Iterable[str]) -> dict[str, list[str]]:
    """An LDAP user's groups, in the shape claim rules read (LDAP rules name no claim)."""
    return {LDAP_GROUP_CLAIM: list(group_dns)}


def first_match(rules: Iterable[MappingRule], source: str, claims: Mapping[str, Any]) -> MappingRule | None:
    """The first rule, in order, whose value the user carries; None: the user is not let in."""
    values = claim_values(source, claims)
    for rule in rules:
        if rule.source != source:
            continue
        claim = LDAP_GROUP_CLAIM if source == Source.LDAP else rule.claim
        if rule.value == MATCH_ANY or normalise(source, rule.value) in values.get(claim, set()):
            return rule
    return None
