"""PostgreSQL as Django's backend has it, with a cheaper connection health check.

With CONN_HEALTH_CHECKS, Django checks a persistent connection with a round trip (SELECT 1)
at the first query of every request and task. Here a connection that answered within the last
DB_HEALTH_CHECK_SECONDS is taken to be alive without asking again. If it died within that
window, the request using it fails with a database error and the connection is replaced when
the request ends (Django closes a connection that had errors).
"""

import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    answered_at = float("-inf")  # when this connection last proved alive (monotonic seconds)

    def connect(self) -> None:
        super().connect()
        self.answered_at = time.monotonic()

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self.answered_at < settings.DB_HEALTH_CHECK_SECONDS
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
        if self.connection is not None:
            self.answered_at = time.monotonic()
