"""Names shared by the limiter, the usage records and the API; each is spelled once, here."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class UsageStatus(models.TextChoices):
    OK = "ok", _("OK")
    ERROR = "error", _("Error")
    CANCELLED = "cancelled", _("Cancelled")
    REJECTED = "rejected", _("Rejected")


class UsagePeriod(models.TextChoices):
    """What one usage row stands for: one request, or the roll-up of an hour's or a day's requests."""

    REQUEST = "", _("Request")
    HOUR = "hour", _("Hour")
    DAY = "day", _("Day")


class LimitName(models.TextChoices):
    """The five limits a quota holds; the value is also the model field and the API field."""

    TOKENS_PER_DAY = "tokens_per_day", _("Tokens per day")
    TOKENS_PER_MONTH = "tokens_per_month", _("Tokens per month")
    REQUESTS_PER_MINUTE = "requests_per_minute", _("Requests per minute")
    CONCURRENT_REQUESTS = "concurrent_requests", _("Concurrent requests")
    MAX_TOKENS_PER_REQUEST = "max_tokens_per_request", _("Maximum max_tokens per request")


class GroupBy(models.TextChoices):
    DAY = "day", _("Day")
    USER = "user", _("User")
    DEPARTMENT = "department", _("Department")
    MODEL = "model", _("Model")


# Stable error codes of a rejection, by the limit that refused it.
REJECTION_CODES: dict[str, str] = {
    LimitName.TOKENS_PER_DAY: "quota_exceeded",
    LimitName.TOKENS_PER_MONTH: "quota_exceeded",
    LimitName.REQUESTS_PER_MINUTE: "rate_limited",
    LimitName.CONCURRENT_REQUESTS: "too_many_concurrent_requests",
    LimitName.MAX_TOKENS_PER_REQUEST: "max_tokens_exceeded",
}
QUOTA_UNAVAILABLE_CODE = "quota_unavailable"

# Scope keys in Redis: "d:<department id>" and "u:<user id>".
DEPARTMENT_SCOPE_PREFIX = "d"
USER_SCOPE_PREFIX = "u"

# The longest a reservation may live. A settle marker lives until the reservation would have
# expired plus this grace, so a repeated settle in that time is a no-op; markers stay few.
MAX_RESERVATION_TTL_SECONDS = 24 * 3600
SETTLED_MARKER_GRACE_SECONDS = 3600
