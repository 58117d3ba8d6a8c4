"""`登记`/`register`: a temporary person registers step by step; the host approves or rejects.

See register.mmd for the steps. Every answer is checked as it arrives, so a typo costs one
message, not the whole conversation; `取消`/`cancel` stops at any step.
"""

from __future__ import annotations

from bot.dispatch.state import Conversation
from bot.i18n import Translate
from bot.replies import Message, Text, options
from campus.accounts import AccountService, Principal
from campus.registration import (
    MAX_DAYS,
    TEMPORARY_CATEGORIES,
    Application,
    Decision,
    Invalid,
    Outcome,
    RegistrationService,
    check_category,
    check_days,
)
from campus.registry import fields
from handlers import keywords as kw
from handlers.decisions import CATEGORY_NAMES

NAME = "register.name"
ID_NUMBER = "register.id_number"
PHONE = "register.phone"
CATEGORY = "register.category"
HOST = "register.host"
PLACE = "register.place"
DAYS = "register.days"

SKIP_WORDS = ("skip", "跳过", "无", "none")


def _category_question(_: Translate) -> str:
    return (
        _("Which of these are you?")
        + "\n"
        + options([(_(CATEGORY_NAMES[c]), c) for c in TEMPORARY_CATEGORIES])
    )


async def start(conv: Conversation, user: Principal, _: Translate) -> Message:
    if user.bound:
        return Text(
            _(
                "This WeChat account is already bound to {name}. "
                "Send unbind first to register someone else.",
                name=user.name,
            )
        )
    conv.goto(NAME)
    return Text(
        _("Registration of a temporary person. Send cancel at any step to stop.")
        + "\n"
        + _("Please send your full name.")
    )


async def got_name(text: str, conv: Conversation, _: Translate) -> Message:
    try:
        name = fields.name(text.strip())
    except Invalid:
        return Text(_("Please send your name as plain text (at most 200 characters)."))
    conv.goto(ID_NUMBER, name=name)
    return Text(_("Please send your ID number (resident ID card or passport)."))


async def got_id_number(
    text: str, conv: Conversation, registration: RegistrationService, _: Translate
) -> Message:
    try:
        id_number = fields.id_number(text)
    except Invalid:
        return Text(
            _("That is not a valid ID number. Please check it and send it again, or send cancel.")
        )
    if await registration.id_taken(id_number):
        conv.finish()
        return Text(
            _(
                "Someone with this ID number is registered already, so we cannot register it "
                "again. If it is yours, send bind, or ask your host for help."
            )
        )
    conv.goto(PHONE, id_number=id_number)
    return Text(_("Please send your mobile phone number."))


async def got_phone(text: str, conv: Conversation, _: Translate) -> Message:
    try:
        phone = fields.phone(text.strip())
    except Invalid:
        phone = None
    if phone is None:
        return Text(_("Please send an 11-digit mainland mobile number, or send cancel."))
    conv.goto(CATEGORY, phone=phone)
    return Text(_category_question(_))


async def got_category(text: str, conv: Conversation, _: Translate) -> Message:
    try:
        category = check_category(text)
    except Invalid:
        return Text(_category_question(_))
    conv.goto(HOST, category=category)
    return Text(_("Please send your host's person number (a member of faculty or staff)."))


async def got_host(
    text: str, conv: Conversation, registration: RegistrationService, _: Translate
) -> Message:
    if not await registration.host_ok(text):
        return Text(
            _(
                "We found no active member of faculty or staff with that number. "
                "Please check it with your host and send it again, or send cancel."
            )
        )
    conv.goto(PLACE, host_no=text.strip().upper())
    return Text(
        _("Where do you live on campus? Send the place code of your house, or skip.")
        + "\n"
        + options([(_("Skip"), _("skip"))])
    )


async def got_place(
    text: str, conv: Conversation, registration: RegistrationService, _: Translate
) -> Message:
    value = text.strip()
    if value.casefold() in SKIP_WORDS or value.casefold() == _("skip").casefold():
        place = ""
    elif await registration.place_ok(value):
        place = value
    else:
        return Text(
            _("We do not know that place code. Send it again, or skip.")
            + "\n"
            + options([(_("Skip"), _("skip"))])
        )
    conv.goto(DAYS, place=place)
    return Text(_("For how many days do you need access? At most {days}.", days=MAX_DAYS))


async def got_days(
    text: str,
    conv: Conversation,
    user: Principal,
    registration: RegistrationService,
    accounts: AccountService,
    _: Translate,
) -> Message:
    try:
        days = check_days(text)
    except Invalid:
        return Text(_("Please send a whole number of days from 1 to {days}.", days=MAX_DAYS))
    data = conv.data
    conv.finish()
    application = Application(
        name=str(data.get("name", "")),
        id_number=str(data.get("id_number", "")),
        phone=str(data.get("phone", "")),
        category=str(data.get("category", "")),
        host_no=str(data.get("host_no", "")),
        days=days,
        place_code=str(data.get("place", "")) or None,
    )
    if not all((application.name, application.id_number, application.phone, application.category)):
        return Text(_("The registration was interrupted. Please send register to start again."))
    outcome, _pid = await registration.register(user.openid, application)
    match outcome:
        case Outcome.REGISTERED:
            await accounts.forget(user.openid)  # the cached principal is now a pending person
            return Text(
                _(
                    "Thank you. Your registration has been sent to your host; "
                    "we will tell you when they have decided."
                )
            )
        case Outcome.DUPLICATE:
            return Text(
                _(
                    "Someone with this ID number is registered already, so we cannot register "
                    "it again. If it is yours, send bind, or ask your host for help."
                )
            )
        case Outcome.BAD_HOST:
            return Text(_("Your host is no longer an active member of faculty or staff."))
        case Outcome.BAD_PLACE:
            return Text(_("We do not know that place code. Send it again, or skip."))
        case Outcome.ACCOUNT_BOUND:
            return Text(_("This WeChat account is bound already. Send unbind first."))


async def approve(
    args: str,
    user: Principal,
    registration: RegistrationService,
    accounts: AccountService,
    _: Translate,
) -> Message:
    return await _decide(args, user, registration, accounts, _, approve=True)


async def reject(
    args: str,
    user: Principal,
    registration: RegistrationService,
    accounts: AccountService,
    _: Translate,
) -> Message:
    return await _decide(args, user, registration, accounts, _, approve=False)


async def _decide(
    args: str,
    user: Principal,
    registration: RegistrationService,
    accounts: AccountService,
    _: Translate,
    *,
    approve: bool,
) -> Message:
    if user.person_id is None or user.state != "active":
        return Text(_("Only the host or a responsible person of the unit can decide this."))
    word = (kw.APPROVE_REG if approve else kw.REJECT_REG).text(user.locale)
    if not args.strip().isdigit():
        return Text(_("Send {command} <registration number>.", command=word))
    result, applicant = await registration.decide(
        user.person_id, user.person_no, user.roles, int(args.strip()), approve
    )
    if applicant is not None:
        await accounts.forget(applicant)  # their cached principal still says pending
    match result:
        case Decision.APPROVED:
            return Text(_("Approved. The applicant has been told."))
        case Decision.REJECTED:
            return Text(_("Rejected. The applicant has been told."))
        case Decision.NOT_PENDING:
            return Text(_("There is no registration waiting with that number."))
        case Decision.NOT_ALLOWED:
            return Text(_("Only the host or a responsible person of the unit can decide this."))
