"""``manage.py serve``: the console as it is deployed, and the only way it is started.

`make run` (deploy/scripts/run-console.sh), the browser and live tests (tests/served.py) and the benchmarks
(bench/harness.py) all run this command, so what they exercise is what an appliance runs: static files
collected (hashed names, gzip and brotli copies, served by WhiteNoise) and granian with several worker
processes, each serving HTTP and WebSocket on one event loop (uvloop). docs/serving.md has the layout
with nginx in front; docs/adr/0002-asgi-server.md why granian.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from appliance.core.staticfiles import collected_is_stale

APPLICATION = "console.asgi:application"


class Command(BaseCommand):
    help = "Serve the console (HTTP and WebSocket) with granian: CONSOLE_HOST, CONSOLE_PORT, CONSOLE_WORKERS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.CONSOLE_HOST, help="address to bind (CONSOLE_HOST)")
        parser.add_argument("--port", type=int, default=settings.CONSOLE_PORT, help="port (CONSOLE_PORT)")
        parser.add_argument(
            "--workers", type=int, default=settings.CONSOLE_WORKERS, help="worker processes (CONSOLE_WORKERS)"
        )
        parser.add_argument(
            "--no-collectstatic",
            action="store_true",
            help="serve STATIC_ROOT as it is; by default it is collected again when a source file is newer",
        )

    def handle(self, *args: Any, host: str, port: int, workers: int, no_collectstatic: bool, **options: Any) -> None:
        if not no_collectstatic and collected_is_stale():
            call_command("collectstatic", interactive=False, verbosity=0)
        # Workers are forked from this process: none may inherit a connection opened here.
        connections.close_all()
        server = _server(host, port, workers)
        shown = f"[{host}]" if ":" in host else host
        self.stdout.write(f"Serving the console at http://{shown}:{port}/ with {workers} worker processes")
        self.stdout.flush()
        server.serve()


def _server(host: str, port: int, workers: int) -> Any:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    return Granian(
        APPLICATION,
        address=host,
        port=port,
        # ASGI without lifespan events: Channels' router has no lifespan application.
        interface=Interfaces.ASGINL,
        workers=workers,
        backlog=settings.CONSOLE_BACKLOG,
        backpressure=settings.CONSOLE_WORKER_CONNECTIONS,
        loop=Loops.uvloop,
        websockets=True,
        log_access=False,  # the reverse proxy logs requests; the console logs what it does
        respawn_failed_workers=True,  # a worker that dies is replaced; its chats are recovered (docs/chat.md)
    )
