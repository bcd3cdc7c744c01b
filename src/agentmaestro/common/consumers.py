"""The base of every WebSocket consumer: refusal codes, JSON framing, commands.

Frames to clients are JSON objects with a ``type``. Stored events carry ``seq``; every
other frame (heartbeat, pong, ack, error, summaries) carries ``"ephemeral": true``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, ClassVar

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from agentmaestro.common.errors import AppError
from agentmaestro.workspaces.models import Role
from agentmaestro.workspaces.selectors import membership_role

logger = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024


@database_sync_to_async
def member_role(user: Any, workspace_id: uuid.UUID) -> Role | None:
    return membership_role(user, workspace_id)


class CloseCode(IntEnum):
    """Close codes of refused or ended sockets (docs/websockets.md)."""

    BAD_REQUEST = 4400
    UNAUTHENTICATED = 4401
    FORBIDDEN_ORIGIN = 4403
    NOT_FOUND = 4404


Frame = dict[str, Any]
CommandHandler = Callable[[Any, Frame], Awaitable[Frame | None]]


class ClientError(AppError):
    pass


class InvalidMessage(ClientError):
    code = "invalid_message"


class UnknownMessageType(ClientError):
    code = "unknown_message_type"


class Forbidden(ClientError):
    code = "forbidden"
    http_status = 403


class BaseSocket(AsyncWebsocketConsumer):
    # message type -> (minimum role, handler method name)
    commands: ClassVar[dict[str, tuple[Role, str]]] = {"ping": (Role.VIEWER, "command_ping")}

    role: Role | None = None
    workspace_id: uuid.UUID

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first hops to the shared sync thread to close stale
        # database connections, for every message on every socket: with 100 sockets on
        # a run that serialized 100 hops per event and was 21% of the server's CPU
        # (bench/events.py; p99 at 100 sockets fell from ~60 ms to ~18 ms without it).
        # Our database access all goes through database_sync_to_async, which closes
        # stale connections itself, in the thread that owns them.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        await handler(message)

    async def refuse(self, code: CloseCode, reason: str) -> None:
        """Accept, then close with ``code``: a handshake refused outright carries no code."""
        await self.accept()
        await self.close(code=int(code), reason=reason)

    async def authenticate(self) -> bool:
        """Close the socket and return False unless the handshake is acceptable."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CloseCode.UNAUTHENTICATED, "unauthenticated")
            return False
        if not self.scope.get("origin_ok"):
            await self.refuse(CloseCode.FORBIDDEN_ORIGIN, "origin not allowed")
            return False
        return True

    async def send_frame(self, frame: Frame) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def send_error(self, error: AppError, request_id: Any = None) -> None:
        frame: Frame = {"type": "error", "ephemeral": True, **error.as_dict()}
        if request_id is not None:
            frame["id"] = request_id
        await self.send_frame(frame)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request_id = None
        try:
            message = self._parse(text_data, bytes_data)
            request_id = message.get("id")
            kind = message["type"]
            if kind not in self.commands:
                raise UnknownMessageType(
                    f"Unknown message type {kind!r}.",
                    details={"type": kind, "known": sorted(self.commands)},
                )
            minimum, handler_name = self.commands[kind]
            role = await self.current_role()
            if role is None or not Role.at_least(role, minimum):
                raise Forbidden(
                    f"{kind!r} needs the {minimum} role.",
                    details={"required_role": minimum.value, "role": role.value if role else None},
                )
            reply = await getattr(self, handler_name)(message)
            if reply is not None:
                if request_id is not None:
                    reply["id"] = request_id
                await self.send_frame(reply)
        except AppError as error:
            await self.send_error(error, request_id)

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> Frame:
        if text_data is None:
            raise InvalidMessage("Messages must be JSON text frames.")
        if len(text_data) > MAX_CLIENT_MESSAGE_BYTES:
            raise InvalidMessage(
                "Message too large.", details={"max_bytes": MAX_CLIENT_MESSAGE_BYTES}
            )
        try:
            message = json.loads(text_data)
        except ValueError:
            raise InvalidMessage("Messages must be JSON.") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise InvalidMessage('Messages must be JSON objects with a string "type".')
        return message

    async def current_role(self) -> Role | None:
        """The user's role now (re-read, so a changed role applies to the next command)."""
        self.role = await member_role(self.scope["user"], self.workspace_id)
        return self.role

    async def command_ping(self, message: Frame) -> Frame:
        return {"type": "pong", "ephemeral": True}


class NotFoundSocket(BaseSocket):
    """Any /ws/ path that matches no route: closed as not found."""

    async def connect(self) -> None:
        await self.refuse(CloseCode.NOT_FOUND, "no such endpoint")
