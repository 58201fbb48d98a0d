"""Live follow of a deployment's logs: the page's WebSocket gets the latest lines every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from appliance.core.exceptions import ServiceError
from appliance.core.querysets import VIEW
from appliance.deployments import logs
from appliance.deployments.models import Deployment

POLL_SECONDS = 2.0
FOLLOW_LIMIT_SECONDS = 15 * 60  # a forgotten tab must not keep a worker busy forever
TAIL_LINES = 200


class LogsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        pk = int(self.scope["url_route"]["kwargs"]["pk"])
        self.deployment = await self._visible(user, pk)
        if self.deployment is None:
            await self.close(code=4403)
            return
        await self.accept()
        self.follower = asyncio.create_task(self._follow())

    @database_sync_to_async
    def _visible(self, user: Any, pk: int) -> Deployment | None:
        if user is None or not user.is_authenticated:
            return None
        return Deployment.objects.restrict(user, VIEW).filter(pk=pk).first()

    async def disconnect(self, code: int) -> None:
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _follow(self) -> None:
        last = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FOLLOW_LIMIT_SECONDS
        while loop.time() < deadline:
            try:
                text = await database_sync_to_async(self._read)()
            except ServiceError as exc:
                await self.send_json({"type": "error", "message": exc.message})
            else:
                if text != last:
                    await self.send_json({"type": "logs", "text": text})
                    last = text
            await asyncio.sleep(POLL_SECONDS)
        await self.close()

    def _read(self) -> str:
        self.deployment.refresh_from_db()
        parts = logs.fetch(self.deployment, TAIL_LINES)
        if len(parts) == 1:
            return str(parts[0]["text"])
        return "\n".join(f"== {p['container']} ({p['node']}) ==\n{p['text']}" for p in parts)
