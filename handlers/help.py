"""Help, cancel, language switch, follow/unfollow, and the fallback for anything unrecognised."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bot.dispatch.state import Conversation
from bot.i18n import Translate, translator
from bot.replies import Message, Silence, Text, options
from bot.wechat.messages import Incoming
from campus.accounts import AccountService, Principal
from handlers import keywords as kw
from handlers.commands import Command, describe, visible


def _quick_options(user: Principal, commands: Sequence[Command], _: Translate) -> str:
    """Tappable shortcuts: the user's first few commands, help, and the other language."""
    shown = [c for c in visible(commands, user) if c.keyword != kw.HELP][:4]
    pairs = [(_(c.summary), c.keyword.text(user.locale)) for c in shown]
    pairs.append((_("All commands"), kw.HELP.text(user.locale)))
    pairs.append(("English", "English") if user.locale == "zh_CN" else ("中文", "中文"))
    return options(pairs)


async def show_help(user: Principal, commands: Sequence[Command], _: Translate) -> Message:
    lines = [_("You can send:")]
    lines += [describe(c, user, _) for c in visible(commands, user)]
    if not user.bound:
        lines.append("")
        lines.append(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    return Text("\n".join(lines))


async def cancel(conv: Conversation, _: Translate) -> Message:
    if not conv.active:
        return Text(_("Nothing to cancel."))
    conv.finish()
    return Text(_("Cancelled. Send help to see what you can do."))


async def switch_language(
    msg: Incoming, user: Principal, accounts: AccountService, commands: Sequence[Command]
) -> Message:
    locale = "en" if msg.text.casefold() == kw.ENGLISH else "zh_CN"
    await accounts.set_locale(user, locale)
    switched = dataclasses.replace(user, locale=locale)
    _ = translator(locale)
    return Text(_("Language set to English.") + "\n" + _quick_options(switched, commands, _))


async def welcome(user: Principal, commands: Sequence[Command], _: Translate) -> Message:
    if user.bound:
        text = _("Welcome back, {name}.", name=user.name)
    else:
        text = _(
            "Welcome to Healthy Campus. To start, bind your campus record: "
            "send bind <person no.> <last 6 of ID>, or register if you are a temporary visitor."
        )
    return Text(text + "\n" + _quick_options(user, commands, _))


async def goodbye(msg: Incoming, accounts: AccountService) -> Message:
    await accounts.set_subscribed(msg.openid, False)
    return Silence()


async def fallback(
    msg: Incoming,
    conv: Conversation,
    user: Principal,
    commands: Sequence[Command],
    _: Translate,
) -> Message:
    if msg.kind == "event" and msg.event != "click":
        return Silence()
    if conv.active:
        return Text(_("Please answer in text, or send cancel to stop."))
    if msg.kind == "event":
        intro = _("That is not available yet.")
    elif msg.kind == "text":
        intro = _("Sorry, I did not understand that.")
    else:
        intro = _("I can only read text messages.")
    return Text(intro + "\n" + _quick_options(user, commands, _))
