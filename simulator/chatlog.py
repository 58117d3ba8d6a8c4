"""Each user's conversation as the phone shows it, and the live streams that follow it."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.clock import Clock

Direction = Literal["in", "out", "system"]
Kind = Literal["text", "image", "news", "event", "template", "system"]
# user: what the user did; reply: a passive reply; custom/template: a push through the API
Via = Literal["user", "reply", "custom", "template", "sim"]
Notice = Literal["menu", "close"]

MAX_ENTRIES_PER_USER = 1000
MAX_QUEUED = 1000


@dataclass(frozen=True, slots=True)
class Article:
    title: str = ""
    description: str = ""
    url: str = ""
    picurl: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One bubble or line, before it has a place in the log."""

    direction: Direction
    kind: Kind
    via: Via
    text: str = ""
    media_id: str = ""
    articles: tuple[Article, ...] = ()
    event: str = ""
    key: str = ""
    code: str = ""  # a system line's meaning, which the page translates
    msg_id: int = 0
    fields: tuple[tuple[str, str], ...] = ()  # a template message's data, in order
    url: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    at: float
    openid: str
    message: Message

    def to_json(self) -> dict[str, Any]:
        m = self.message
        body: dict[str, Any] = {
            "id": self.id,
            "at": self.at,
            "openid": self.openid,
            "dir": m.direction,
            "kind": m.kind,
            "via": m.via,
        }
        optional: dict[str, Any] = {
            "text": m.text,
            "media_id": m.media_id,
            "event": m.event,
            "key": m.key,
            "code": m.code,
            "msg_id": m.msg_id,
            "url": m.url,
            "articles": [article_json(a) for a in m.articles],
            "fields": [{"name": n, "value": v} for n, v in m.fields],
        }
        body.update({k: v for k, v in optional.items() if v})
        return body


def article_json(article: Article) -> dict[str, str]:
    return {
        "title": article.title,
        "description": article.description,
        "url": article.url,
        "picurl": article.picurl,
    }


StreamItem = Entry | Notice


@dataclass(slots=True)
class _Conversation:
    entries: deque[Entry] = field(default_factory=lambda: deque(maxlen=MAX_ENTRIES_PER_USER))
    streams: set[asyncio.Queue[StreamItem]] = field(default_factory=set)


class ChatLog:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._chats: dict[str, _Conversation] = {}

    def add(self, openid: str, message: Message) -> Entry:
        entry = Entry(next(self._ids), self._clock.time(), openid, message)
        chat = self._chats.setdefault(openid, _Conversation())
        chat.entries.append(entry)
        for queue in list(chat.streams):
            self._offer(chat, queue, entry)
        return entry

    def entries(self, openid: str, after: int = 0) -> list[Entry]:
        chat = self._chats.get(openid)
        return [e for e in chat.entries if e.id > after] if chat else []

    def all_entries(self) -> Iterator[Entry]:
        for chat in self._chats.values():
            yield from chat.entries

    def subscribe(self, openid: str) -> asyncio.Queue[StreamItem]:
        queue: asyncio.Queue[StreamItem] = asyncio.Queue(MAX_QUEUED)
        self._chats.setdefault(openid, _Conversation()).streams.add(queue)
        return queue

    def unsubscribe(self, openid: str, queue: asyncio.Queue[StreamItem]) -> None:
        chat = self._chats.get(openid)
        if chat is not None:
            chat.streams.discard(queue)

    def notify_all(self, notice: Notice) -> None:
        for chat in self._chats.values():
            for queue in list(chat.streams):
                self._offer(chat, queue, notice)

    @staticmethod
    def _offer(chat: _Conversation, queue: asyncio.Queue[StreamItem], item: StreamItem) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            # A reader this far behind is gone: end its stream; the page reconnects and
            # replays from the log.
            chat.streams.discard(queue)
            queue.get_nowait()
            queue.put_nowait("close")
