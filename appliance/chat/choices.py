"""States, roles and tasks of the chat portal, and the constants its streaming shares."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from appliance.catalog.choices import CHAT_TASKS, DEFAULT_CHAT_DEFAULTS


class Role(models.TextChoices):
    USER = "user", _("User")
    ASSISTANT = "assistant", _("Assistant")


class Status(models.TextChoices):
    """An assistant message's life: streaming, then exactly one terminal state."""

    STREAMING = "streaming", _("Streaming")
    COMPLETE = "complete", _("Complete")
    STOPPED = "stopped", _("Stopped")
    FAILED = "failed", _("Failed")
    # The process running the generation died; the text it had streamed is kept.
    INTERRUPTED = "interrupted", _("Interrupted")


TERMINAL = (Status.COMPLETE, Status.STOPPED, Status.FAILED, Status.INTERRUPTED)


class Task(models.TextChoices):
    """The catalog's chat tasks; each has a default temperature in the profile's ``chat_defaults``."""

    CODE = "code", _("Code")
    MATH = "math", _("Math")
    DATA_ANALYSIS = "data_analysis", _("Data analysis")
    CONVERSATION = "conversation", _("Conversation")
    TRANSLATION = "translation", _("Translation")
    CREATIVE_WRITING = "creative_writing", _("Creative writing")


assert set(Task.values) == set(CHAT_TASKS)
DEFAULT_TASK = Task.CONVERSATION
DEFAULT_TEMPERATURES = DEFAULT_CHAT_DEFAULTS
TEMPERATURE_MAX = 2.0

# Completion budget when the user sets none, capped by half the model's context.
DEFAULT_MAX_TOKENS = 4096
MAX_TOKENS_LIMIT = 131072
MAX_CONTENT_CHARS = 100_000
MAX_SYSTEM_PROMPT_CHARS = 20_000
TITLE_MAX = 200
TITLE_FROM_FIRST_MESSAGE_CHARS = 40

# Deltas reach the browser in batches: whichever comes first of this many pieces or this delay (the first
# piece of an answer goes at once: the time to the first token is what a user waits on).
BATCH_MAX_PIECES = 20
BATCH_MAX_DELAY_SECONDS = 0.05
# A batch due goes out at the engine's next read, or this much later if the engine is quiet (a timer's wake-up
# per batch while it streams cost more than the wait: generation.Alarm).
BATCH_QUIET_SECONDS = 0.025
# The text in progress is written to Redis this often after the answer's start, all the batches since in
# one write; at every batch while another web process holds a socket of the user (live.py).
LIVE_WRITE_SECONDS = 1.0
# ... and to the database this often.
DB_FLUSH_SECONDS = 5.0
# Each web process beats this often; its counts of sockets are dropped once a beat is this old (live.py).
PROCESS_BEAT_SECONDS = 10.0
PROCESS_BEAT_TTL_SECONDS = 60
# A running generation refreshes its heartbeat this often; it expires after HEARTBEAT_TTL_SECONDS.
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL_SECONDS = 30
# Redis keys of a generation outlive it this long (a reaper reads them after a crash).
LIVE_TTL_SECONDS = 24 * 3600
# A streaming message younger than this is never taken for an orphan (its heartbeat may not be set yet).
ORPHAN_GRACE_SECONDS = 60


class ErrorCode(models.TextChoices):
    """Stable codes of a failed answer or a refused request; the page translates them."""

    ENGINE_UNAVAILABLE = "engine_unavailable", _("The model service cannot be reached.")
    ENGINE_TIMEOUT = "engine_timeout", _("The model service stopped responding.")
    ENGINE_ERROR = "engine_error", _("The model service returned an error.")
    ENGINE_DISCONNECTED = "engine_disconnected", _("The model service broke off the answer.")
    INTERRUPTED = "interrupted", _("The console restarted while answering.")
    QUOTA_EXCEEDED = "quota_exceeded", _("Your department's quota is used up.")
    QUOTA_UNAVAILABLE = "quota_unavailable", _("Quota accounting is unavailable; try again shortly.")
    RATE_LIMITED = "rate_limited", _("Too many questions in the last minute for your quota; wait a moment.")
    TOO_MANY_CONCURRENT = "too_many_concurrent_requests", _("Too many answers at once for your quota.")
    MAX_TOKENS_EXCEEDED = "max_tokens_exceeded", _("Max tokens is above what your quota allows per answer.")
    CONTENT_BLOCKED = "content_blocked", _("Blocked by your organisation's content-safety rules.")
    MODEL_UNAVAILABLE = "model_unavailable", _("This model is not available to you.")
    MODEL_NOT_STARTED = "model_not_started", _("The model could not be started; try again shortly.")
    BUSY = "busy", _("An answer is still being written in this conversation.")
    NOT_FOUND = "not_found", _("Not found.")
    INVALID = "invalid", _("Invalid request.")
    INTERNAL = "internal", _("Something went wrong on the console.")
