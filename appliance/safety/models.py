"""Word lists (platform-wide or of one department), their rules, and the record of every hit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from appliance.core.querysets import VIEW, RestrictedQuerySet
from appliance.safety.choices import WORD_MAX_CHARS, Action, Channel, Stage

if TYPE_CHECKING:
    from appliance.accounts.models import User


class WordListQuerySet(RestrictedQuerySet["WordList"]):
    def applying_to(self, department_ids: list[int]) -> WordListQuerySet:
        """Enabled lists that apply to a department: platform lists and those of it and its ancestors."""
        return self.filter(Q(department__isnull=True) | Q(department_id__in=department_ids), enabled=True)


class WordList(models.Model):
    """A list of sensitive words. ``department`` null: it applies to everyone (platform level);
    otherwise to the department and the departments below it."""

    name = models.CharField(max_length=100)
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.CASCADE, related_name="word_lists"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Bumped by every change of the list or its rules: the compiled matchers are keyed by it.
    updated_at = models.DateTimeField(auto_now=True)

    objects = WordListQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def audit_snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "department": self.department_id, "enabled": self.enabled}

    @staticmethod
    def restrict_scope(qs: WordListQuerySet, user: User, action: str) -> WordListQuerySet:
        """Department admins: the lists of their subtree, and platform lists to read. Members: none."""
        dept = user.department
        if not user.is_department_admin or dept is None:
            return qs.none()
        subtree = Q(department__path__startswith=dept.path)
        return qs.filter(subtree | Q(department__isnull=True)) if action == VIEW else qs.filter(subtree)


class WordRule(models.Model):
    word_list = models.ForeignKey(WordList, on_delete=models.CASCADE, related_name="rules")
    word = models.CharField(max_length=WORD_MAX_CHARS)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.BLOCK)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["word_list", "word"], name="safety_rule_unique_word")]

    def __str__(self) -> str:
        return f"{self.word} ({self.action})"


class SafetyHitQuerySet(RestrictedQuerySet["SafetyHit"]):
    pass


class SafetyHit(models.Model):
    """One rule matched in one prompt or answer. Names are frozen: the record outlives lists and rules.

    ``excerpt`` (the text around the match) is kept only when ``APPLIANCE_SAFETY_RECORD_TEXT`` is on.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.SET_NULL, related_name="safety_hits"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="safety_hits"
    )
    username = models.CharField(max_length=150, blank=True)
    word_list = models.ForeignKey(WordList, null=True, blank=True, on_delete=models.SET_NULL, related_name="hits")
    list_name = models.CharField(max_length=100)
    rule = models.ForeignKey(WordRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="hits")
    word = models.CharField(max_length=WORD_MAX_CHARS)
    action = models.CharField(max_length=16, choices=Action.choices)
    stage = models.CharField(max_length=16, choices=Stage.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    model = models.CharField(max_length=128, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    excerpt = models.TextField(blank=True)

    objects = SafetyHitQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"hit {self.pk} {self.action}"

    @staticmethod
    def restrict_scope(qs: SafetyHitQuerySet, user: User, action: str) -> SafetyHitQuerySet:
        """Department admins read their subtree's hits; nobody changes them (auditors read all, via the gate)."""
        dept = user.department
        if action != VIEW or not user.is_department_admin or dept is None:
            return qs.none()
        return qs.filter(department__path__startswith=dept.path)


class AiLabelSetting(models.Model):
    """Whether answers carry the "AI-generated" label (人工智能生成合成内容标识办法) for a department and the
    departments below it; ``department`` null is the platform's default. Without any setting: shown."""

    department = models.OneToOneField(
        "accounts.Department", null=True, blank=True, on_delete=models.CASCADE, related_name="ai_label"
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"AI label {'on' if self.enabled else 'off'} for {self.department_id or 'platform'}"
