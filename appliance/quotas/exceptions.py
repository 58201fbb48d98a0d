"""Why a request was not admitted. The API error handler turns both into the stable error shape."""

from __future__ import annotations

from django.utils.translation import gettext as _

from appliance.core.exceptions import QuotaExceeded as BaseQuotaExceeded
from appliance.core.exceptions import ServiceError
from appliance.quotas.choices import QUOTA_UNAVAILABLE_CODE, LimitName


class QuotaExceeded(BaseQuotaExceeded):
    """A limit refused the request: 429 (400 for ``max_tokens_per_request``, which waiting won't fix)."""

    status_code = 429

    def __init__(
        self,
        code: str,
        limit_name: str,
        limit: int,
        current: int,
        retry_after_seconds: int | None,
        scope: str = "",
        requested: int | None = None,
    ) -> None:
        values = {
            "label": LimitName(limit_name).label,
            "name": limit_name,
            "scope": scope,
            "value": limit,
            "current": current,
            "requested": current if requested is None else requested,
        }
        # Names the limit as the API spells it and what this request asked of it, so a refused
        # client knows which budget (and whose) is in the way, not only that one is.
        message = (
            _(
                "Quota exceeded: %(label)s (%(name)s) of %(scope)s is %(value)d; in use %(current)d, "
                "this request needs up to %(requested)d."
            )
            % values
        )
        details = {
            "limit_name": limit_name,
            "limit": limit,
            "current": current,
            "requested": requested,
            "retry_after_seconds": retry_after_seconds,
            "scope": scope,
        }
        super().__init__(message, code=code, details=details)
        self.limit_name, self.limit, self.current = limit_name, limit, current
        self.retry_after_seconds, self.scope = retry_after_seconds, scope
        if limit_name == LimitName.MAX_TOKENS_PER_REQUEST:
            self.status_code = 400

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)} if self.retry_after_seconds else {}


class QuotaUnavailable(ServiceError):
    """Quotas cannot be checked (Redis unreachable) and the console fails closed."""

    status_code = 503
    code = QUOTA_UNAVAILABLE_CODE
    headers = {"Retry-After": "1"}
