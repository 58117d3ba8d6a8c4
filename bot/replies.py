"""What a handler answers: plain values, rendered to WeChat XML by bot/wechat/render.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Text:
    content: str


@dataclass(frozen=True, slots=True)
class Image:
    media_id: str


@dataclass(frozen=True, slots=True)
class Silence:
    """No passive reply (WeChat gets `success`)."""


Message = Text | Image | Silence


@dataclass(frozen=True, slots=True)
class Reply:
    """The passive reply, plus messages that follow as customer-service messages."""

    first: Message
    follow_ups: tuple[Text | Image, ...] = field(default=())


def as_reply(value: Message | Reply) -> Reply:
    return value if isinstance(value, Reply) else Reply(value)


# WeChat puts msgmenucontent in the user's message as written (no URL decoding), so content
# is kept raw and characters that would break the link are refused.
_FORBIDDEN = set('<>"&#\n')


def option(label: str, content: str, menu_id: int) -> str:
    """A tappable line: tapping it sends `content` as the user's message."""
    if _FORBIDDEN & set(content) or _FORBIDDEN & set(label):
        raise ValueError(f"option {content!r} contains markup characters")
    return f'<a href="weixin://bizmsgmenu?msgmenucontent={content}&msgmenuid={menu_id}">{label}</a>'


def options(pairs: Iterable[tuple[str, str]]) -> str:
    """One tappable option per line, from (label, content) pairs."""
    return "\n".join(option(label, content, i) for i, (label, content) in enumerate(pairs, 1))
