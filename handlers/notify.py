"""`通知 <unit> <text>` / `notify <unit> <text>`: a responsible person's notice to their units."""

from __future__ import annotations

from bot.i18n import Translate
from bot.replies import Message, Text
from bot.wechat.messages import Incoming
from campus.accounts import Principal
from campus.broadcast import MAX_TEXT, BroadcastRefused, BroadcastService, Refusal
from handlers import keywords as kw


async def notify(
    msg: Incoming, args: str, user: Principal, broadcasts: BroadcastService, _: Translate
) -> Message:
    if not user.bound or not user.has_role("responsible"):
        return Text(_("Only responsible persons can send notices."))
    parts = args.split(maxsplit=1)
    if len(parts) < 2:
        return Text(await _usage(user, broadcasts, _))
    unit_code, text = parts
    try:
        result = await broadcasts.send(
            unit_code=unit_code,
            text=text,
            include_subunits=True,
            sender=user,
            # A retried delivery of this message is the same broadcast: nobody gets it twice.
            broadcast_id=f"chat-{msg.msg_id}" if msg.msg_id else None,
        )
    except BroadcastRefused as exc:
        return Text(await _refusal(exc, user, broadcasts, _))
    reply = _(
        "Notice queued for {unit}. Recipients: {count}.",
        count=result.recipients,
        unit=result.unit_name,
    )
    if result.unbound:
        reply += "\n" + _(
            "Not bound to WeChat yet, so not reached: {count}.",
            count=result.unbound,
        )
    return Text(reply)


async def _usage(user: Principal, broadcasts: BroadcastService, _: Translate) -> str:
    lines = [
        _(
            "Send {command} <unit code> <text>: everyone in that unit and its sub-units gets it.",
            command=kw.NOTIFY.text(user.locale),
        )
    ]
    units = await broadcasts.units_for(user.person_no)
    if units:
        lines.append(_("Your units: {units}", units=", ".join(f"{c} {n}" for c, n in units)))
    return "\n".join(lines)


async def _refusal(
    exc: BroadcastRefused, user: Principal, broadcasts: BroadcastService, _: Translate
) -> str:
    match exc.reason:
        case Refusal.EMPTY:
            return await _usage(user, broadcasts, _)
        case Refusal.TOO_LONG:
            return _("The notice is too long: at most {limit} characters.", limit=MAX_TEXT)
        case Refusal.UNKNOWN_UNIT | Refusal.NOT_RESPONSIBLE:
            # The same answer for both: unit codes are no secret, but there is nothing to gain
            # from telling which exist.
            return (
                _("You are not responsible for a unit {code}.", code=exc.detail)
                + "\n"
                + await _usage(user, broadcasts, _)
            )
        case Refusal.UNKNOWN_CATEGORY:
            return _("Unknown category {category}.", category=exc.detail)
