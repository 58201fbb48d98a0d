"""Word-list operations: each owns its transaction and writes its audit record inside it.

Import format (UTF-8 text, also what export writes): one word per line, optionally followed by a
tab and an action (``block``, ``mask``, ``record``; the import's default otherwise). Blank lines
and lines starting with ``#`` are skipped; a word already in the list takes the new action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from appliance.accounts.models import Department, User
from appliance.audit import services as audit
from appliance.core.exceptions import InvalidInput, NotFound, PermissionDenied
from appliance.core.querysets import CHANGE, DELETE, VIEW
from appliance.safety.choices import LIST_MAX_RULES, WORD_MAX_CHARS, Action
from appliance.safety.models import WordList, WordRule
from appliance.safety.permissions import may_manage_platform_safety

_BATCH = 2000


@dataclass(frozen=True)
class ImportResult:
    added: int
    updated: int
    skipped: int
    total: int


def _department(actor: User, department_id: int | None) -> Department | None:
    if department_id is None:
        if not may_manage_platform_safety(actor):
            raise PermissionDenied(_("Only platform admins manage platform-wide word lists."))
        return None
    dept = actor.managed_departments().filter(pk=department_id).first()
    if dept is None:
        raise PermissionDenied(_("You may not manage the word lists of this department."))
    return dept


def _lock(actor: User, list_id: int, action: str) -> WordList:
    found = WordList.objects.restrict(actor, action).select_for_update().filter(pk=list_id).first()
    if found is None:
        raise NotFound(_("Word list not found."))
    return found


@transaction.atomic
def create_list(actor: User, *, name: str, department_id: int | None = None, enabled: bool = True) -> WordList:
    word_list = WordList.objects.create(name=name, department=_department(actor, department_id), enabled=enabled)
    audit.record("safety.list.create", actor=actor, target=word_list, after=word_list.audit_snapshot())
    return word_list


@transaction.atomic
def update_list(actor: User, list_id: int, **changes: Any) -> WordList:
    unknown = sorted(set(changes) - {"name", "enabled"})
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(unknown)}", code="unknown_field")
    word_list = _lock(actor, list_id, CHANGE)
    before = word_list.audit_snapshot()
    for name, value in changes.items():
        setattr(word_list, name, value)
    word_list.save()
    audit.record("safety.list.update", actor=actor, target=word_list, before=before, after=word_list.audit_snapshot())
    return word_list


@transaction.atomic
def delete_list(actor: User, list_id: int) -> None:
    word_list = _lock(actor, list_id, DELETE)
    before = {**word_list.audit_snapshot(), "rules": word_list.rules.count()}
    audit.record("safety.list.delete", actor=actor, target=word_list, department_id=word_list.department_id,
                 before=before)  # fmt: skip
    word_list.delete()


def parse_lines(text: str, default_action: str) -> dict[str, str]:
    """Word → action from the import format; raises InvalidInput naming the first bad line."""
    if default_action not in Action.values:
        raise InvalidInput(_("Unknown action: %(action)s") % {"action": default_action}, code="invalid_action")
    parsed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        word, _tab, action = line.strip().partition("\t")
        word, action = word.strip(), action.strip().lower() or default_action
        if not word or word.startswith("#"):
            continue
        if action not in Action.values or len(word) > WORD_MAX_CHARS:
            message = _("Line %(line)d: a word of at most %(max)d characters, then optionally a tab and an action.")
            raise InvalidInput(message % {"line": number, "max": WORD_MAX_CHARS}, code="invalid_line")
        parsed[word] = action
    return parsed


@transaction.atomic
def import_words(actor: User, list_id: int, text: str, *, default_action: str = Action.BLOCK,
                 replace: bool = False) -> ImportResult:  # fmt: skip
    """Add (or with ``replace``, set) the list's words from the import format."""
    word_list = _lock(actor, list_id, CHANGE)
    parsed = parse_lines(text, default_action)
    if replace:
        word_list.rules.all().delete()
    existing = dict(word_list.rules.values_list("word", "action"))
    if len(set(existing) | set(parsed)) > LIST_MAX_RULES:
        raise InvalidInput(_("A list holds at most %(max)d words.") % {"max": LIST_MAX_RULES}, code="too_many")
    new = [WordRule(word_list=word_list, word=w, action=a) for w, a in parsed.items() if w not in existing]
    WordRule.objects.bulk_create(new, batch_size=_BATCH)
    changed = [w for w, a in parsed.items() if w in existing and existing[w] != a]
    for action in Action.values:
        words = [w for w in changed if parsed[w] == action]
        for start in range(0, len(words), _BATCH):
            word_list.rules.filter(word__in=words[start : start + _BATCH]).update(action=action)
    word_list.save(update_fields=["updated_at"])  # the compiled matchers notice the change by this
    result = ImportResult(len(new), len(changed), len(parsed) - len(new) - len(changed), word_list.rules.count())
    after = {"replace": replace, "default_action": default_action, **result.__dict__}
    audit.record("safety.list.import", actor=actor, target=word_list, after=after)
    return result


def export_words(actor: User, list_id: int) -> str:
    word_list = WordList.objects.restrict(actor, VIEW).filter(pk=list_id).first()
    if word_list is None:
        raise NotFound(_("Word list not found."))
    rows = word_list.rules.order_by("id").values_list("word", "action")
    return "".join(f"{word}\t{action}\n" for word, action in rows.iterator())
