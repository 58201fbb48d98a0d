"""Create the provider's database, signing key, users and the console's client, from OIDC_PROVIDER_SEED (JSON)."""

from __future__ import annotations

import json
import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.directory.oidc_provider.settings")
    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from oidc_provider.models import Client, ResponseType

    seed = json.loads(os.environ["OIDC_PROVIDER_SEED"])
    call_command("migrate", verbosity=0)
    call_command("creatersakey")
    for person in seed["users"]:
        user = User.objects.create_user(
            person["username"],
            person["email"],
            person["password"],
            first_name=person["name"],
            last_name=person.get("department", ""),
        )
        for name in person.get("groups", []):
            user.groups.add(Group.objects.get_or_create(name=name)[0])
    client = Client.objects.create(
        name="console",
        client_type="confidential",
        client_id=seed["client_id"],
        client_secret=seed["client_secret"],
        jwt_alg="RS256",
        require_consent=False,
        reuse_consent=True,
    )
    client.redirect_uris = seed["redirect_uris"]
    client.save()
    client.response_types.add(ResponseType.objects.get(value="code"))


if __name__ == "__main__":
    main()
