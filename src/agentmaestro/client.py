"""``agentmaestro run``: start a run through the REST API and follow it live in a terminal.

A client of a running server, like any other program: it speaks HTTP and WebSocket with
an API token and loads no settings, database or Django. The server and token come from
``--url``/``--token`` or ``AGENTMAESTRO_URL``/``AGENTMAESTRO_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_FAILED = 1  # the run ended FAILED or CANCELLED
EXIT_USAGE = 2  # bad arguments, refused request, server unreachable
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
CALL_FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
RECONNECT_ATTEMPTS = 10

DESCRIPTION = """\
Start a run of AGENT through the server's REST API; with --follow, stream its events
live (model text as it is generated, tool calls and their results, the final answer)
and exit 0 if it COMPLETED, 1 if it FAILED or was CANCELLED, 2 if the request failed.

environment:
  AGENTMAESTRO_URL     the server (default http://127.0.0.1:8000)
  AGENTMAESTRO_TOKEN   an API token (agentmaestro createtoken USERNAME prints one)
  NO_COLOR             set to turn colours off (they are off when not on a terminal)
"""


class ClientError(Exception):
    """A request the server refused, or a server that could not be reached."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentmaestro run",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("agent", help="the agent's slug or id")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--input", help='the prompt (sent as {"prompt": INPUT}); default: empty prompt'
    )
    source.add_argument("--input-json", help="the run's input as a JSON value")
    p.add_argument(
        "--workspace",
        help="workspace slug or id (default: your only workspace; required if you have several)",
    )
    p.add_argument("--follow", "-f", action="store_true", help="stream the run until it ends")
    p.add_argument(
        "--url",
        default=os.environ.get("AGENTMAESTRO_URL", DEFAULT_URL),
        help="the server (default: $AGENTMAESTRO_URL, else %(default)s)",
    )
    p.add_argument(
        "--token", default=os.environ.get("AGENTMAESTRO_TOKEN"), help="default: $AGENTMAESTRO_TOKEN"
    )
    p.add_argument("--no-color", action="store_true", help="no ANSI colours")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if not args.token:
        print(
            "agentmaestro run: no API token: pass --token or set AGENTMAESTRO_TOKEN "
            "(agentmaestro createtoken USERNAME prints one).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.input_json is not None:
        try:
            run_input: Any = json.loads(args.input_json)
        except json.JSONDecodeError as exc:
            print(f"agentmaestro run: --input-json is not JSON: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        run_input = {"prompt": args.input or ""}
    color = not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    api = Api(args.url.rstrip("/"), args.token)
    try:
        workspace = api.workspace_id(args.workspace)
        run = api.create_run(workspace, args.agent, run_input)
    except ClientError as exc:
        print(f"agentmaestro run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    printer = Printer(sys.stdout, color=color)
    printer.started(run, args.url.rstrip("/"))
    if not args.follow:
        return 0
    try:
        status = asyncio.run(follow(api, str(run["id"]), printer))
    except ClientError as exc:
        print(f"agentmaestro run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0 if status == "COMPLETED" else EXIT_FAILED


@dataclass
class Api:
    url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        try:
            response = httpx.request(
                method,
                self.url + path,
                headers={**self.headers, **(headers or {})},
                timeout=30,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            if isinstance(body, dict) and "code" in body:
                raise ClientError(f"{body['code']}: {body.get('message', '')}")
            raise ClientError(f"{method} {path}: HTTP {response.status_code}")
        return body

    def workspace_id(self, wanted: str | None) -> str:
        body = self._request("GET", "/api/v1/workspaces/")
        items = body.get("items", []) if isinstance(body, dict) else body
        if wanted:
            for item in items:
                if wanted in (str(item.get("id")), item.get("slug")):
                    return str(item["id"])
            raise ClientError(f"no workspace {wanted!r} among yours")
        if len(items) == 1:
            return str(items[0]["id"])
        slugs = ", ".join(str(item.get("slug")) for item in items) or "none"
        raise ClientError(f"pass --workspace: you belong to {len(items)} ({slugs})")

    def create_run(self, workspace: str, agent: str, run_input: Any) -> dict[str, Any]:
        # A fresh Idempotency-Key: a retry of this very request cannot start a second run.
        run: dict[str, Any] = self._request(
            "POST",
            f"/api/v1/workspaces/{quote(workspace)}/runs/",
            json={"agent": agent, "input": run_input},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return run

    def ws_url(self, run_id: str, since_seq: int) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit(
            (scheme, parts.netloc, f"/ws/runs/{run_id}/", f"since_seq={since_seq}", "")
        )


async def follow(api: Api, run_id: str, printer: Printer) -> str:
    """Print the run's events until it ends; reconnect (from the last seq) if cut off."""
    import websockets

    last_seq = 0
    failures = 0
    while True:
        try:
            async with websockets.connect(
                api.ws_url(run_id, last_seq), additional_headers=api.headers
            ) as socket:
                failures = 0
                async for raw in socket:
                    frame = json.loads(raw)
                    if frame.get("type") == "event":
                        if frame["seq"] <= last_seq:
                            continue
                        last_seq = frame["seq"]
                    printer.frame(frame)
                    if printer.status in TERMINAL:
                        return printer.status
        except websockets.InvalidStatus as exc:
            raise ClientError(f"the server refused the stream: {exc}") from exc
        except (OSError, websockets.ConnectionClosed) as exc:
            close = getattr(exc, "rcvd", None)
            if close is not None and 4400 <= close.code < 4500:
                raise ClientError(
                    f"the server closed the stream: {close.code} {close.reason}"
                ) from exc
            failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise ClientError(f"lost the stream: {exc}") from exc
            printer.note(f"connection lost ({exc}); reconnecting from seq {last_seq}")
            await asyncio.sleep(min(5.0, 0.2 * 2**failures))


def _model_turn_ended(type_: str, p: dict[str, Any]) -> bool:
    """A model turn's outcome: its step's update, or its creation already finished."""
    return type_ == "step.updated" or (type_ == "step.created" and p.get("kind") == "MODEL_CALL")


@dataclass
class Printer:
    """Turns frames into lines a person can follow; model text streams in place."""

    out: TextIO
    color: bool = False
    status: str = "PENDING"
    # The step index whose deltas are being printed, and the steps already shown.
    streaming: int | None = None
    streamed: set[int] = field(default_factory=set)
    tools: dict[str, str] = field(default_factory=dict)
    usage: tuple[int, int] | None = None
    # What each model turn said (streamed or whole), by step index.
    said: dict[int, str] = field(default_factory=dict)

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def line(self, text: str) -> None:
        if self.streaming is not None:
            self.write("\n")
            self.streaming = None
        self.write(text + "\n")

    def note(self, text: str) -> None:
        self.line(self.paint(f"… {text}", "2"))

    def started(self, run: dict[str, Any], url: str) -> None:
        self.status = str(run.get("status", "PENDING"))
        self.line(f"run {run['id']}  {self.paint(self.status, '1')}")
        self.line(self.paint(f"  {url}/runs/{run['id']}/", "2"))

    def frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "token.delta":
            index = frame.get("step_index")
            if self.streaming != index:
                self.line(self.paint("model ▸ ", "36"))
                self.streaming = index
                self.out.write("  ")
            if isinstance(index, int):
                self.streamed.add(index)
                self.said[index] = self.said.get(index, "") + str(frame.get("text", ""))
            self.write(str(frame.get("text", "")))
        elif kind == "event":
            self.event(frame["event_type"], frame["payload"])
        elif kind == "error":
            self.note(f"server error {frame.get('code')}: {frame.get('message')}")

    def event(self, type_: str, p: dict[str, Any]) -> None:
        if type_ == "run.status_changed":
            self.status = p["to_status"]
            colour = {"COMPLETED": "32", "FAILED": "31", "CANCELLED": "33"}.get(self.status, "1")
            self.line(self.paint(f"● {self.status}", colour))
            if self.status in TERMINAL and self.usage:
                self.line(self.paint("tokens: {} in, {} out".format(*self.usage), "2"))
            if self.status == "COMPLETED":
                output = p.get("output")
                text = output.get("text") if isinstance(output, dict) else None
                if not isinstance(text, str):
                    self.line(json.dumps(output, indent=2))
                elif text != self.said.get(max(self.said, default=0)):
                    self.line(text)  # unless the model's last turn, just shown, said it
            elif self.status in {"FAILED", "CANCELLED"} and p.get("error"):
                self.line(self.paint(f"{p['error']['code']}: {p['error']['message']}", "31"))
        elif _model_turn_ended(type_, p) and p.get("payload") and p["status"] == "COMPLETED":
            usage = p["payload"].get("usage")
            if isinstance(usage, dict):  # the run's totals are the sum of its turns'
                before = self.usage or (0, 0)
                self.usage = (
                    before[0] + int(usage.get("input_tokens") or 0),
                    before[1] + int(usage.get("output_tokens") or 0),
                )
            text = p["payload"].get("text")
            if isinstance(text, str) and "turn" in p["payload"]:
                self.said[p["index"]] = text
            if p["index"] in self.streamed:
                if self.streaming == p["index"]:
                    self.write("\n")  # the streamed text is complete
                    self.streaming = None
            elif text and "turn" in p["payload"]:
                # No deltas arrived for this turn (joined late, or a fast model): the text.
                self.line(self.paint("model ▸ ", "36") + text)
        elif _model_turn_ended(type_, p) and p["status"] == "FAILED" and p.get("payload"):
            error = p["payload"].get("error") or {}
            message = f"model failed: {error.get('code')}: {error.get('message')}"
            self.line(self.paint(message, "31"))
        elif type_ == "tool_call.created":
            self.tools[p["id"]] = p["tool_name"]
            args = json.dumps(p.get("arguments"), separators=(",", ":"))
            self.line(self.paint("tool ▸ ", "35") + f"{p['tool_name']}({args})")
            if p.get("status") in CALL_FINAL:  # created finished: its outcome is here too
                self.event("tool_call.updated", p)
        elif type_ == "tool_call.updated" and p["status"] in CALL_FINAL:
            name = self.tools.get(p["id"], "tool")
            if p["status"] == "SUCCEEDED":
                result = json.dumps(p.get("result"), separators=(",", ":"))
                self.line(self.paint("  ◂ ", "35") + f"{name} → {result}")
            else:
                error = p.get("error") or {"code": p["status"].lower(), "message": ""}
                self.line(
                    self.paint("  ◂ ", "35")
                    + self.paint(f"{name} ✗ {error['code']}: {error['message']}", "31")
                )
        elif type_ == "run.usage_updated":  # older logs: the totals after a turn
            self.usage = (p["input_tokens"], p["output_tokens"])
