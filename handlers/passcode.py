"""`健康码`/`code` and the MY_CODE menu key: the pass code as an image, then one line of text."""

from __future__ import annotations

from bot.i18n import Translate
from bot.passcards import STATUS_NAMES, CardUnavailable, PassCards
from bot.replies import Image, Message, Reply, Text
from campus.access.passes import NoCode
from campus.accounts import Principal


async def show_code(user: Principal, pass_cards: PassCards, _: Translate) -> Message | Reply:
    if user.person_id is None:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    try:
        card = await pass_cards.card(user.person_id, user.locale)
    except CardUnavailable:
        return Text(_("Your code could not be prepared just now. Please try again in a minute."))
    if card is NoCode.PENDING:
        return Text(
            _("Your registration is waiting for confirmation; your code comes once confirmed.")
        )
    if isinstance(card, NoCode):
        return Text(
            _(
                "Your campus record is not active, so there is no pass code. "
                "Please contact your unit."
            )
        )
    until = pass_cards.local(card.expires)
    minutes = max(1, (card.expires - card.issued) // 60)
    line = _(
        "{name} · {status} · valid until {time} ({minutes} min). Show it at the gate; "
        "send code again for a fresh one.",
        name=card.masked_name,
        status=_(STATUS_NAMES[card.status]),
        time=f"{until:%H:%M}",
        minutes=minutes,
    )
    return Reply(Image(card.media_id), follow_ups=(Text(line),))
