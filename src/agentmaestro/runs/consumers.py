"""``/ws/runs/<run_id>/?since_seq=N``: a run's events, in order, each exactly once.

The protocol (docs/websockets.md):

1. join the run's group first, so nothing committed from now on can be missed;
2. send the stored events with ``seq > since_seq`` from the database;
3. then send live events, dropping any ``seq`` already sent; a live event that
   arrives after a gap (a broadcast lost or overtaken) first fills the gap from the
   database;
4. every heartbeat re-reads the run's ``last_seq`` and sends whatever the client has
   not had, so even a lost *last* broadcast arrives within one heartbeat.

One lock orders everything that sends events, so step 3 never interleaves with a
catch-up started by step 2 or 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings

from agentmaestro.common.consumers import BaseSocket, CloseCode, Frame, InvalidMessage
from agentmaestro.runs.events.broadcast import run_group
from agentmaestro.runs.models import AgentRun
from agentmaestro.runs.selectors import run_events_since, run_last_seq
from agentmaestro.runs.services.runs import run_cancel
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.selectors import membership_role

CATCH_UP_PAGE = 1000


@database_sync_to_async
def _run_access(user: Any, run_id: uuid.UUID) -> tuple[uuid.UUID, int, Role] | None:
    row = AgentRun.objects.filter(id=run_id).values_list("workspace_id", "last_seq").first()
    if row is None:
        return None
    role = membership_role(user, row[0])
    return None if role is None else (row[0], row[1], role)


@database_sync_to_async
def _events_page(run_id: uuid.UUID, since_seq: int) -> list[Frame]:
    return [event.as_frame() for event in run_events_since(run_id, since_seq, CATCH_UP_PAGE)]


@database_sync_to_async
def _last_seq_and_role(
    user: Any, run_id: uuid.UUID, workspace_id: uuid.UUID
) -> tuple[int, Role | None]:
    return (run_last_seq(run_id) or 0), membership_role(user, workspace_id)


@database_sync_to_async
def _cancel(run_id: uuid.UUID, user: Any, reason: str) -> int:
    return run_cancel(run_id=run_id, by=user, reason=reason).last_seq


class RunStreamConsumer(BaseSocket):
    commands = {
        **BaseSocket.commands,
        "cancel": (Role.MEMBER, "command_cancel"),
    }

    run_id: uuid.UUID
    last_sent: int = 0
    group: str | None = None
    _heartbeat: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        if not await self.authenticate():
            return
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        since_seq = self._since_seq()
        access = await _run_access(self.scope["user"], self.run_id)
        if access is None:
            await self.refuse(CloseCode.NOT_FOUND, "no such run")
            return
        self.workspace_id, last_seq, self.role = access
        if since_seq is None or since_seq > last_seq:
            await self.refuse(
                CloseCode.BAD_REQUEST,
                f"since_seq must be an integer between 0 and the run's last_seq ({last_seq})",
            )
            return
        self._lock = asyncio.Lock()
        self.last_sent = since_seq
        self.group = run_group(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        async with self._lock:
            await self._catch_up()
        self._heartbeat = asyncio.create_task(self._beat())

    def _since_seq(self) -> int | None:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("since_seq")
        if not values:
            return 0
        try:
            since = int(values[-1])
        except ValueError:
            return None
        return since if since >= 0 else None

    async def disconnect(self, code: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _catch_up(self) -> None:
        """Send every stored event after ``last_sent``. Call with the lock held."""
        while True:
            frames = await _events_page(self.run_id, self.last_sent)
            for frame in frames:
                await self.send_frame(frame)
                self.last_sent = frame["seq"]
            if len(frames) < CATCH_UP_PAGE:
                return

    async def run_events(self, message: dict[str, Any]) -> None:
        """Live events from the group (``broadcast.Broadcaster.publish_events``)."""
        async with self._lock:
            for frame in message["events"]:
                seq = frame["seq"]
                if seq <= self.last_sent:
                    continue  # already sent, by a catch-up or an earlier delivery
                if seq > self.last_sent + 1:
                    # A gap: the missing events are committed (broadcasts follow commits),
                    # so the database has them and this one too.
                    await self._catch_up()
                    continue
                await self.send_frame(frame)
                self.last_sent = seq

    async def run_delta(self, message: dict[str, Any]) -> None:
        """A streamed model token: ephemeral, never stored, no seq (may be missed)."""
        await self.send_frame(
            {
                "type": "token.delta",
                "ephemeral": True,
                "step_id": message["step_id"],
                "step_index": message["step_index"],
                "text": message["text"],
            }
        )

    async def _beat(self) -> None:
        interval = settings.AGENTMAESTRO_WS_HEARTBEAT_SECONDS
        while True:
            await asyncio.sleep(interval)
            last_seq, role = await _last_seq_and_role(
                self.scope["user"], self.run_id, self.workspace_id
            )
            if role is None:  # removed from the workspace while watching
                await self.close(code=int(CloseCode.NOT_FOUND), reason="no longer a member")
                return
            self.role = role
            async with self._lock:
                if last_seq > self.last_sent:
                    await self._catch_up()
                await self.send_frame(
                    {"type": "heartbeat", "ephemeral": True, "last_seq": last_seq}
                )

    async def command_cancel(self, message: Frame) -> Frame:
        reason = message.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 1000:
            raise InvalidMessage('"reason" must be a string of at most 1000 characters.')
        last_seq = await _cancel(self.run_id, self.scope["user"], reason)
        return {"type": "ack", "ephemeral": True, "command": "cancel", "last_seq": last_seq}
