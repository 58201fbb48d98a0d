"""Who a chat socket acts for, read again at every message: a logout, an expired session or a deactivation
ends access at once.

Through the ORM that read (the user with their department, and the session) cost about 0.8 ms of CPU, and it
ran at every message of every socket: at 256 chats it was a tenth of a worker's time (py-spy,
docs/performance.md). Here one SQL lookup returns the user's row, their department's row and whether the
session stands; the ORM builds the user again only when one of those rows changed since the socket's last
message, so a changed role or department is seen at the next message as before.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DatabaseSession
from django.db import connections, router
from django.utils import timezone

from appliance.accounts.models import Department, User


class KnownUser:
    """One socket's user, as of its last message."""

    def __init__(self) -> None:
        self.row: tuple[Any, ...] | None = None
        self.user: User | None = None

    def read(self, user_id: int, session: Any) -> User | None:
        """The session's user now; None once the session ended or the user was deactivated."""
        if not isinstance(session, DatabaseSession):  # another session engine: its own check, then the ORM
            return _fresh(user_id) if session.exists(session.session_key) else None
        conn = connections[router.db_for_read(User)]
        with conn.cursor() as cursor:
            cursor.execute(
                _lookup(conn.alias, session.model._meta.db_table),
                [user_id, session.session_key, conn.ops.adapt_datetimefield_value(timezone.now())],
            )
            row = cursor.fetchone()
        if row is None:
            self.row = self.user = None
            return None
        if row != self.row or self.user is None:
            self.row, self.user = row, _fresh(user_id)
        return self.user


def _fresh(user_id: int) -> User | None:
    found = list(User.objects.select_related("department").filter(pk=user_id, is_active=True)[:1])
    return found[0] if found else None


@functools.cache
def _lookup(alias: str, session_table: str) -> str:
    """The user's row and their department's, if the user is active and the session stands."""
    quote = connections[alias].ops.quote_name
    users, departments, sessions = quote(User._meta.db_table), quote(Department._meta.db_table), quote(session_table)
    columns = [f"u.{quote(f.column)}" for f in User._meta.concrete_fields]
    columns += [f"d.{quote(f.column)}" for f in Department._meta.concrete_fields]
    department = quote(User._meta.get_field("department").column)
    # Table and column names from the models' own metadata, never input: the values are parameters.
    return (
        f"SELECT {', '.join(columns)} FROM {users} u LEFT JOIN {departments} d ON d.{quote('id')} = u.{department} "  # noqa: S608
        f"WHERE u.{quote('id')} = %s AND u.{quote('is_active')} "
        f"AND EXISTS (SELECT 1 FROM {sessions} s WHERE s.{quote('session_key')} = %s AND s.{quote('expire_date')} > %s)"
    )
