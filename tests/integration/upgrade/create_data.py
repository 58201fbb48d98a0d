"""Run by tests/integration/test_upgrade.py under the OLD release's code (its tree first on sys.path).

Creates data through the old release's REST API (departments, users, an API key, a quota) and its
usage drain, then prints the counts and the API key's secret as JSON.
"""

import json
import os
import time

import django

django.setup()

from django.test import Client  # noqa: E402

from appliance.accounts.models import ApiKey, Department, User  # noqa: E402
from appliance.audit.models import AuditRecord  # noqa: E402
from appliance.audit.services import verify_chain  # noqa: E402
from appliance.quotas.drain import store_records  # noqa: E402
from appliance.quotas.models import Quota, UsageRecord  # noqa: E402
from appliance.quotas.usage import RequestMeta, usage_record  # noqa: E402

client = Client()
assert client.login(username="admin", password=os.environ["CONSOLE_ADMIN_PASSWORD"])


def post(url: str, data: dict) -> dict:
    response = client.post(url, data=json.dumps(data), content_type="application/json")
    assert response.status_code == 201, (url, response.status_code, response.content)
    return response.json()


eng = post("/api/v1/departments/", {"code": "eng", "name": "研发部"})
post("/api/v1/departments/", {"code": "eng-ml", "name": "算法组", "parent": eng["id"]})
bob = post(
    "/api/v1/users/",
    {"username": "bob", "department": eng["id"], "role": "member", "password": os.environ["BOB_PASSWORD"]},
)
key = post("/api/v1/api-keys/", {"name": "upgrade-key", "user": bob["id"]})
post("/api/v1/quotas/", {"department": eng["id"], "tokens_per_day": 100000, "requests_per_minute": 60})
meta = RequestMeta(user_id=bob["id"], department_id=eng["id"], api_key_id=key["id"], model="qwen2.5-7b")
now = time.time()
records = [
    usage_record(
        meta,
        f"old-{n}",
        status="ok",
        prompt_tokens=10 + n,
        completion_tokens=20 + n,
        latency_ms=900,
        ttft_ms=120,
        now=now - n * 3600,
    )
    for n in range(40)
]
store_records(records)
report = verify_chain()
assert report.ok, report.problem
print(
    json.dumps(
        {
            "key": key["key"],
            "counts": {
                "departments": Department.objects.count(),
                "users": User.objects.count(),
                "api_keys": ApiKey.objects.count(),
                "quotas": Quota.objects.count(),
                "usage": UsageRecord.objects.count(),
                "usage_tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in records),
                "audit": AuditRecord.objects.count(),
            },
        }
    )
)
