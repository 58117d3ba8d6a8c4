"""A place poster scanned with WeChat's own scanner: a self check-in (or a guard going on duty).

A follower's scan arrives as `SCAN` with key `place:<CODE>`; a new follower's as `subscribe`
with `qrscene_place:<CODE>`. Other follows get the usual welcome.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.guardtags import GuardTagger
from bot.i18n import Translate
from bot.replies import Message, Silence, Text, options
from bot.settings import Settings
from bot.wechat.messages import Incoming
from campus.access.duty import GuardDuty
from campus.access.gate import AccessService
from campus.access.posters import place_code
from campus.accounts import Principal
from handlers import help
from handlers import keywords as kw
from handlers.commands import Command
from handlers.decisions import for_person
from handlers.guard import is_guard, start_duty


async def scanned(
    msg: Incoming,
    user: Principal,
    settings: Settings,
    duty: GuardDuty,
    access: AccessService,
    guard_tags: GuardTagger,
    commands: Sequence[Command],
    _: Translate,
) -> Message:
    code = place_code(msg.event_key)
    if code is None:
        if msg.event == "subscribe":
            return await help.welcome(user, commands, _)
        return Silence()
    if user.person_id is None:
        return Text(
            _(
                "Welcome to Healthy Campus. To check in here, first bind your campus record: "
                "send bind <person no.> <last 6 of ID>, then scan this code again."
            )
            + "\n"
            + options([(_("Bind now"), kw.BIND.text(user.locale))])
        )
    place = await access.places.by_code(code)
    if place is None:
        return Text(_("This place code is not known. Please tell the staff here."))
    if is_guard(user) and place.kind == "gate":
        return await start_duty(user, place, duty, guard_tags, _)
    direction = await duty.take_direction(user.openid)
    decision = await access.check_in(user.person_id, place, direction)
    return Text(for_person(decision, settings.tz, _))
