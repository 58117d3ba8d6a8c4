"""Binding: `绑定 <person_no> <ID last 6>` in one message, or step by step; and unbinding."""

from __future__ import annotations

from bot.dispatch.state import Conversation
from bot.i18n import Translate, translator
from bot.replies import Message, Text, options
from campus.accounts import Principal
from campus.binding import BindingService, BindOutcome, looks_like_id_tail, looks_like_person_no
from handlers import keywords as kw

PERSON_NO = "bind.person_no"
ID_TAIL = "bind.id_tail"
CONFIRM_UNBIND = "unbind.confirm"


async def start(
    args: str, conv: Conversation, user: Principal, binding: BindingService, _: Translate
) -> Message:
    if user.bound:
        return Text(
            _(
                "This WeChat account is already bound to {name}. "
                "Send unbind first to bind another.",
                name=user.name,
            )
        )
    parts = args.split()
    if len(parts) == 2:
        return await _attempt(parts[0], parts[1], conv, user, binding, _)
    if len(parts) == 1 and looks_like_person_no(parts[0]):
        conv.goto(ID_TAIL, person_no=parts[0])
        return Text(_("Now send the last 6 characters of your ID number."))
    conv.goto(PERSON_NO)
    return Text(_("Please send your person number (student or staff number)."))


async def got_person_no(text: str, conv: Conversation, _: Translate) -> Message:
    if not looks_like_person_no(text):
        return Text(_("That does not look like a person number. Try again, or send cancel."))
    conv.goto(ID_TAIL, person_no=text)
    return Text(_("Now send the last 6 characters of your ID number."))


async def got_id_tail(
    text: str, conv: Conversation, user: Principal, binding: BindingService, _: Translate
) -> Message:
    if not looks_like_id_tail(text):
        return Text(_("Please send exactly 6 letters or digits, or send cancel."))
    return await _attempt(str(conv.data.get("person_no", "")), text, conv, user, binding, _)


async def _attempt(
    person_no: str,
    id_tail: str,
    conv: Conversation,
    user: Principal,
    binding: BindingService,
    _: Translate,
) -> Message:
    conv.finish()
    if not looks_like_person_no(person_no) or not looks_like_id_tail(id_tail):
        return Text(_("The person number and ID number do not match our records."))
    result = await binding.bind(user.openid, person_no, id_tail)
    match result.outcome:
        case BindOutcome.BOUND | BindOutcome.ALREADY_BOUND:
            _ = translator(result.locale or user.locale)
            locale = result.locale or user.locale
            return Text(
                _("Bound. Welcome, {name}!", name=result.person_name)
                + "\n"
                + options([(_("All commands"), kw.HELP.text(locale))])
            )
        case BindOutcome.MISMATCH:
            return Text(_("The person number and ID number do not match our records."))
        case BindOutcome.LIMITED:
            return Text(_("Too many failed attempts. Please try again in an hour."))
        case BindOutcome.ACCOUNT_TAKEN:
            return Text(_("This WeChat account is bound to someone else. Send unbind first."))
        case BindOutcome.PERSON_TAKEN:
            return Text(
                _(
                    "This record is already bound to another WeChat account. Release it there "
                    "with unbind, or ask your counsellor."
                )
            )
        case BindOutcome.INACTIVE:
            return Text(_("This record is no longer active. Please contact your unit."))


async def start_unbind(conv: Conversation, user: Principal, _: Translate) -> Message:
    if not user.bound:
        return Text(_("This WeChat account is not bound."))
    conv.goto(CONFIRM_UNBIND)
    return Text(
        _("Release the binding to {name}?", name=user.name)
        + "\n"
        + options([(_("Yes, release"), _("yes")), (_("No"), kw.CANCEL.text(user.locale))])
    )


async def confirm_unbind(
    text: str, conv: Conversation, user: Principal, binding: BindingService, _: Translate
) -> Message:
    conv.finish()
    if text.casefold() not in ("yes", "是", "确认", _("yes").casefold()):
        return Text(_("Kept as it is."))
    await binding.unbind(user.openid)
    return Text(_("Released. This WeChat account is no longer bound."))
