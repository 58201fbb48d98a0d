"""The compiled rules that apply to a department, kept per process.

Which lists apply is looked up at most every ``APPLIANCE_GATEWAY_CACHE_SECONDS`` per department (one
small query); the automaton itself is rebuilt only when a list changed (its ``updated_at``), since
compiling 50,000 words takes a noticeable fraction of a second. So an edited list takes effect in
every web process within those seconds, as a changed quota or a revoked key does.
"""

from __future__ import annotations

import threading

from appliance.accounts.models import Department
from appliance.core.ttlcache import TtlCache
from appliance.safety.matcher import Matcher, Rule
from appliance.safety.models import WordList, WordRule

Signature = tuple[tuple[int, float], ...]

_lock = threading.Lock()
_by_department: TtlCache[int | None, Signature] = TtlCache()
_compiled: dict[Signature, Matcher] = {}
_MAX_COMPILED = 64  # distinct sets of lists in use at once; far more than departments with lists of their own


def clear_cache() -> None:
    _by_department.clear()
    with _lock:
        _compiled.clear()


def _lineage(department_id: int | None) -> list[int]:
    if department_id is None:
        return []
    path = Department.objects.filter(pk=department_id).values_list("path", flat=True).first()
    return [int(part) for part in (path or "").strip("/").split("/") if part]


def _signature(department_id: int | None) -> Signature:
    rows = WordList.objects.applying_to(_lineage(department_id)).values_list("id", "updated_at")
    return tuple(sorted((pk, at.timestamp()) for pk, at in rows))


def _compile(signature: Signature) -> Matcher:
    ids = [pk for pk, _at in signature]
    names = dict(WordList.objects.filter(pk__in=ids).values_list("id", "name"))
    rows = WordRule.objects.filter(word_list_id__in=ids).values_list("id", "word_list_id", "word", "action")
    return Matcher(Rule(pk, list_id, names[list_id], word, action) for pk, list_id, word, action in rows.iterator())


def matcher_for(department_id: int | None) -> Matcher | None:
    """The rules for a user of this department (None: no department); None when no rule applies."""
    cached, signature = _by_department.get(department_id)
    if not cached or signature is None:
        signature = _signature(department_id)
        _by_department.put(department_id, signature)
    if not signature:
        return None
    with _lock:
        matcher = _compiled.get(signature)
    if matcher is None:
        matcher = _compile(signature)
        with _lock:
            if len(_compiled) >= _MAX_COMPILED:
                _compiled.clear()
            _compiled[signature] = matcher
    return matcher or None
