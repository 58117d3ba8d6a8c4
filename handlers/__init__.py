"""Conversations, one module each; the router order is written here and only here.

Order: commands that work in the middle of any conversation (cancel, help, language) →
the steps of multi-step conversations → entry points (keywords, menu keys, events) →
the fallback (short help; only outside a conversation).
"""

from __future__ import annotations

from bot.dispatch.router import Router
from bot.i18n import N_
from handlers import bind, help
from handlers import keywords as kw
from handlers.commands import Command

COMMANDS: tuple[Command, ...] = (
    Command(kw.BIND, N_("bind your campus record"), N_("<person no.> <ID last 6>"), bound=False),
    Command(kw.UNBIND, N_("release this WeChat account's binding"), bound=True),
    Command(kw.HELP, N_("list what you can send")),
    Command(kw.CANCEL, N_("stop the current step")),
)


def build_router() -> Router:
    r = Router()
    # 1. Anywhere, even mid-conversation.
    r.add(help.cancel, keywords=kw.CANCEL.words)
    r.add(help.show_help, keywords=kw.HELP.words, menu_keys=[kw.MENU_HELP])
    r.add(help.switch_language, keywords=[kw.ENGLISH, kw.CHINESE])
    # 2. Conversation steps.
    r.add(bind.got_person_no, state=bind.PERSON_NO)
    r.add(bind.got_id_tail, state=bind.ID_TAIL)
    r.add(bind.confirm_unbind, state=bind.CONFIRM_UNBIND)
    # 3. Entry points.
    r.add(bind.start, keywords=kw.BIND.words)
    r.add(bind.start_unbind, keywords=kw.UNBIND.words)
    r.add(help.welcome, events=["subscribe"])
    r.add(help.goodbye, events=["unsubscribe"])
    # 4. Anything else.
    r.add(help.fallback, fallback=True)
    return r
