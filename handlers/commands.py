"""What `帮助`/`help` may list: each command, who may use it, and one line saying what it does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.i18n import Translate
from campus.accounts import Principal
from handlers.keywords import Keyword


@dataclass(frozen=True, slots=True)
class Command:
    keyword: Keyword
    summary: str  # an N_() message id
    usage: str = ""  # arguments shown after the keyword, e.g. "<person_no> <ID last 6>"
    bound: bool | None = None  # True: bound users only; False: unbound only; None: everyone
    roles: frozenset[str] = frozenset()  # any of these roles (empty: no role needed)

    def visible_to(self, user: Principal) -> bool:
        if self.bound is not None and self.bound != user.bound:
            return False
        return not self.roles or bool(self.roles & user.roles)


def visible(commands: Sequence[Command], user: Principal) -> list[Command]:
    return [c for c in commands if c.visible_to(user)]


def describe(command: Command, user: Principal, _: Translate) -> str:
    word = command.keyword.text(user.locale)
    usage = f" {_(command.usage)}" if command.usage else ""
    return f"{word}{usage} — {_(command.summary)}"
