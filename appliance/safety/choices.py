"""Actions, stages and channels of content-safety rules, and the limits of a word list."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Action(models.TextChoices):
    """What a match does. Stronger first: of several rules matching one word, the strongest acts."""

    BLOCK = "block", _("Block the request")
    MASK = "mask", _("Mask in the answer")
    RECORD = "record", _("Record only")


ACTION_RANK = {Action.BLOCK: 3, Action.MASK: 2, Action.RECORD: 1}


class Stage(models.TextChoices):
    PROMPT = "prompt", _("Prompt")
    ANSWER = "answer", _("Answer")


class Channel(models.TextChoices):
    CHAT = "chat", _("Chat")
    GATEWAY = "gateway", _("API (/v1)")


WORD_MAX_CHARS = 100
LIST_MAX_RULES = 200_000
MASK_CHAR = "*"
# Characters of text either side of a match kept with a hit, when the setting keeps text at all.
EXCERPT_CONTEXT_CHARS = 20
BLOCKED_CODE = "content_blocked"
