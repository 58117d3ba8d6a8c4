"""Routes from an incoming message to a handler: the first match wins, in the written order."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.dispatch.state import Conversation
from bot.replies import Message, Reply
from bot.wechat.messages import Incoming

Handler = Callable[..., Awaitable[Message | Reply]]

_SPACE = re.compile(r"\s+")


def split_command(text: str) -> tuple[str, str]:
    """('绑定', 'S001 123456') from '绑定 S001 123456'; the command is case-folded."""
    text = text.strip()
    if not text:
        return "", ""
    parts = _SPACE.split(text, maxsplit=1)
    return parts[0].casefold(), parts[1] if len(parts) > 1 else ""


_NONE = 1 << 30  # "no route": greater than any route's position


@dataclass
class _Index:
    """For each way of matching, the position of the first route that matches that way."""

    keywords: dict[str, int] = field(default_factory=dict)
    phrases: list[int] = field(default_factory=list)
    steps: dict[str, int] = field(default_factory=dict)
    prefixes: list[tuple[int, str]] = field(default_factory=list)
    menu_keys: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    fallback: int = _NONE


@dataclass(frozen=True)
class Route:
    """When a handler applies.

    - `keywords`: the first word of a text message (any case), e.g. 打卡 / checkin.
    - `menu_keys`: CLICK (and scancode) events with these keys.
    - `events`: other events by name (subscribe, scan, …).
    - `state`: text while the conversation is at this step (a trailing `*` matches a prefix).
    - `fallback`: anything left over (the handler keeps to short help outside a conversation).

    Keyword routes listed before the state routes work in the middle of a conversation
    (cancel, help); those after them only start one.
    """

    handler: Handler
    keywords: frozenset[str] = frozenset()
    phrases: frozenset[str] = frozenset()  # keywords of several words, e.g. "my unit"
    menu_keys: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    state: str | None = None
    fallback: bool = False
    params: tuple[str, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return f"{self.handler.__module__}.{self.handler.__qualname__}"

    def matches(self, msg: Incoming, conv: Conversation, command: str) -> bool:
        if self.state is not None:
            if msg.kind != "text" or conv.step is None:
                return False
            if self.state.endswith("*"):
                return conv.step.startswith(self.state[:-1])
            return conv.step == self.state
        if self.keywords and msg.kind == "text" and command in self.keywords:
            return True
        if self.phrases and msg.kind == "text":
            text = " ".join(msg.text.casefold().split())
            if any(text == p or text.startswith(p + " ") for p in self.phrases):
                return True
        if self.menu_keys and msg.kind == "event" and msg.event_key in self.menu_keys:
            return msg.event in ("click", "scancode_waitmsg", "scancode_push")
        if self.events and msg.kind == "event" and msg.event in self.events:
            return True
        return self.fallback


class Router:
    """Routes in the written order; `match` finds the first that matches through an index
    (word, step, menu key, event → the first route listing it) instead of trying each route,
    so a guard's scan or a conversation step costs the same as `帮助` however many routes
    there are. `match_linear` is the plain definition, kept to test the index against."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._index: _Index | None = None

    def add(
        self,
        handler: Handler,
        *,
        keywords: Iterable[str] = (),
        menu_keys: Iterable[str] = (),
        events: Iterable[str] = (),
        state: str | None = None,
        fallback: bool = False,
    ) -> None:
        params = tuple(inspect.signature(handler).parameters)
        words = [k.casefold() for k in keywords]
        self.routes.append(
            Route(
                handler=handler,
                keywords=frozenset(w for w in words if " " not in w),
                phrases=frozenset(w for w in words if " " in w),
                menu_keys=frozenset(menu_keys),
                events=frozenset(e.lower() for e in events),
                state=state,
                fallback=fallback,
                params=params,
            )
        )
        self._index = None

    def match(self, msg: Incoming, conv: Conversation) -> Route | None:
        index = self._index or self._build()
        routes = self.routes
        best = index.fallback
        if msg.kind == "text":
            command, _ = split_command(msg.content)
            best = min(best, index.keywords.get(command, _NONE))
            if index.phrases:
                for i in index.phrases:
                    if i < best and routes[i].matches(msg, conv, command):
                        best = i
                        break
            step = conv.step
            if step is not None:
                best = min(best, index.steps.get(step, _NONE))
                for i, prefix in index.prefixes:
                    if i >= best:
                        break
                    if step.startswith(prefix):
                        best = i
                        break
        elif msg.kind == "event":
            event = msg.event
            if event in ("click", "scancode_waitmsg", "scancode_push"):
                best = min(best, index.menu_keys.get(msg.event_key, _NONE))
            best = min(best, index.events.get(event, _NONE))
        return routes[best] if best < _NONE else None

    def match_linear(self, msg: Incoming, conv: Conversation) -> Route | None:
        command, _ = split_command(msg.content) if msg.kind == "text" else ("", "")
        for route in self.routes:
            if route.matches(msg, conv, command):
                return route
        return None

    def _build(self) -> _Index:
        index = _Index()
        for i, route in enumerate(self.routes):
            for word in route.keywords:
                index.keywords.setdefault(word, i)
            if route.phrases:
                index.phrases.append(i)
            if route.state is not None:
                if route.state.endswith("*"):
                    index.prefixes.append((i, route.state[:-1]))
                else:
                    index.steps.setdefault(route.state, i)
            for key in route.menu_keys:
                index.menu_keys.setdefault(key, i)
            for event in route.events:
                index.events.setdefault(event, i)
            if route.fallback and index.fallback == _NONE:
                index.fallback = i
        self._index = index
        return index

    def check_dependencies(self, available: Iterable[str]) -> None:
        """Fail at start-up, not on a user's message, when a handler asks for something unknown."""
        names = set(available)
        for route in self.routes:
            missing = [p for p in route.params if p not in names]
            if missing:
                raise LookupError(f"handler {route.name} needs unknown {', '.join(missing)}")

    async def call(self, route: Route, deps: dict[str, Any]) -> Message | Reply:
        return await route.handler(**{p: deps[p] for p in route.params})
