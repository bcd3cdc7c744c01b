"""Workspace-wide sockets: run summaries, and the approvals inbox."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.conf import settings

from agentmaestro.common.consumers import BaseSocket, CloseCode
from agentmaestro.runs.events.broadcast import approvals_group, workspace_group


class _WorkspaceSocket(BaseSocket):
    group: str | None = None
    _heartbeat: asyncio.Task[None] | None = None

    def group_name(self) -> str:
        raise NotImplementedError

    async def connect(self) -> None:
        if not await self.authenticate():
            return
        self.workspace_id = self.scope["url_route"]["kwargs"]["workspace_id"]
        if await self.current_role() is None:  # not a member, or no such workspace: the same answer
            await self.refuse(CloseCode.NOT_FOUND, "no such workspace")
            return
        self.group = self.group_name()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self._heartbeat = asyncio.create_task(self._beat())

    async def disconnect(self, code: int) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(settings.AGENTMAESTRO_WS_HEARTBEAT_SECONDS)
            if await self.current_role() is None:
                await self.close(code=int(CloseCode.NOT_FOUND), reason="no longer a member")
                return
            await self.send_frame({"type": "heartbeat", "ephemeral": True})


class WorkspaceConsumer(_WorkspaceSocket):
    """``/ws/workspaces/<id>/``: a summary frame whenever any run of the workspace changes."""

    def group_name(self) -> str:
        return workspace_group(self.workspace_id)

    async def run_summary(self, message: dict[str, Any]) -> None:
        await self.send_frame({"type": "run.summary", "ephemeral": True, "run": message["run"]})


class ApprovalsConsumer(_WorkspaceSocket):
    """``/ws/workspaces/<id>/approvals/``: approval requests and decisions as they happen."""

    def group_name(self) -> str:
        return approvals_group(self.workspace_id)

    async def approval_update(self, message: dict[str, Any]) -> None:
        await self.send_frame(
            {"type": "approval", "ephemeral": True, "approval": message["approval"]}
        )
