"""Inline the console's CSS and JavaScript into its pages.

The pages must work wherever the ASGI app runs, and ``agentmaestro web`` serves no
static files (a reverse proxy does, once collectstatic has run), so the few kilobytes of
page code travel inside the page instead of depending on that setup.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from django import template
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

ASSET_DIR = Path(__file__).resolve().parent.parent / "static" / "console"


@cache
def _read(name: str) -> str:
    path = (ASSET_DIR / name).resolve()
    if path.parent != ASSET_DIR:
        raise ValueError(f"not a console asset: {name!r}")
    text = path.read_text(encoding="utf-8")
    # Inside <script> or <style>, "</" could end the element early.
    if "</" in text:
        raise ValueError(f"{name} contains '</', which would end its element early")
    return text


@register.simple_tag
def inline_asset(name: str) -> SafeString:
    """The text of ``console/static/console/<name>`` (our own file, so safe to inline)."""
    if settings.DEBUG:
        _read.cache_clear()
    return mark_safe(_read(name))  # noqa: S308 — our own static file, checked above
