"""`返校`/`return` (menu RETURN): apply to come back, step by step; change it before approval
(`返校 修改`), withdraw it before arrival (`返校 撤回`). Approvers: `同意 A12` / `驳回 A12 <reason>`
and `待审批`/`pending`.

Steps (returns.mmd): batch → arrival date → transport → its number → departure region →
summary to confirm. Every answer is checked as it arrives; `取消`/`cancel` stops at any step.
The English `approve`/`reject` are also the registration's: an application is typed with its
`A` (`approve A12`), a registration as a bare number (`approve 12`), and the latter is handed on.
"""

from __future__ import annotations

from datetime import date

from bot.dispatch.router import split_command
from bot.dispatch.state import Conversation
from bot.i18n import N_, Translate
from bot.replies import Message, Text, options
from campus.accounts import AccountService, Principal
from campus.registration import RegistrationService
from campus.returns.applications import (
    TRANSPORTS,
    ApplicationView,
    Form,
    Outcome,
    Result,
    ReturnService,
    check_number,
    check_reason,
    check_region,
)
from campus.returns.approvals import TRANSPORT_NAMES, Decision, parse_ref, ref, step_label
from campus.returns.eligibility import Eligibility, Problem
from handlers import keywords as kw
from handlers import register

BATCH = "return.batch"
DATE = "return.date"
TRANSPORT = "return.transport"
NUMBER = "return.number"
REGION = "return.region"
CONFIRM = "return.confirm"
REJECT_REASON = "return.reject_reason"

MAX_DAYS_SHOWN = 10
WITHDRAW_WORDS = ("撤回", "withdraw")
CHANGE_WORDS = ("修改", "change")
CONFIRM_WORDS = ("确认", "提交", "是", "confirm", "submit", "yes")
_TRANSPORT_WORDS = {
    "火车": "train",
    "高铁": "train",
    "动车": "train",
    "飞机": "flight",
    "航班": "flight",
    "汽车": "car",
    "自驾": "car",
    "其他": "other",
    "其它": "other",
}
NUMBER_HINTS = {
    "train": N_("Please send the train number, e.g. G1234."),
    "flight": N_("Please send the flight number, e.g. CA1234."),
    "car": N_("Please send the car's plate number."),
    "other": N_("Please say in a few words how you travel (e.g. coach from Wuhan)."),
}
STATE_NAMES = {
    "pending": N_("waiting for approval"),
    "approved": N_("approved"),
    "rejected": N_("not approved"),
    "withdrawn": N_("withdrawn"),
    "arrived": N_("arrived"),
}


def _word(locale: str, words: tuple[str, str]) -> str:
    return words[0] if locale == "zh_CN" else words[1]


def _return_word(user: Principal, sub: tuple[str, str]) -> str:
    return f"{kw.RETURN.text(user.locale)} {_word(user.locale, sub)}"


def _problems(found: Eligibility, user: Principal, _: Translate) -> str:
    lines = [_("You cannot apply to return yet:")]
    for problem in found.problems:
        match problem:
            case Problem.NOT_STUDENT:
                lines.append("· " + _("only students apply to return to campus."))
            case Problem.INACTIVE:
                lines.append("· " + _("your campus record is not active; ask your counsellor."))
            case Problem.RETURNED:
                lines.append("· " + _("you are back on campus already."))
            case Problem.OPEN_APPLICATION:
                lines.append("· " + _("you have an application open already."))
            case Problem.STATUS:
                lines.append(
                    "· "
                    + _(
                        "your health status must be green; send {word} to see why it is not.",
                        word=kw.STATUS.text(user.locale),
                    )
                )
            case Problem.CHECKINS:
                lines.append(
                    "· "
                    + _(
                        "you need {needed} days of check-ins in a row; you have {days}. Check in "
                        "every day ({word}) and apply again in {missing} day(s).",
                        needed=found.needed_days,
                        days=found.checkin_days,
                        word=kw.CHECKIN.text(user.locale),
                        missing=found.days_missing,
                    )
                )
            case Problem.NO_BATCH:
                lines.append(
                    "· " + _("no return batch is open to your unit yet; we will announce it.")
                )
    return "\n".join(lines)


def _view(view: ApplicationView, user: Principal, _: Translate) -> str:
    state = _(STATE_NAMES.get(view.state, view.state))
    lines = [
        _("Your return application {ref}: {state}.", ref=view.ref, state=state),
        _summary(
            view.batch_name, view.arrive_on, view.transport, view.transport_no, view.region, _
        ),
    ]
    if view.state == "pending":
        lines.append(
            _(
                "Waiting at step {step} of {steps} ({name}).",
                step=view.step + 1,
                steps=view.steps,
                name=step_label(view.step_name, _),
            )
        )
        lines.append(
            options(
                [
                    (_("Change it"), _return_word(user, CHANGE_WORDS)),
                    (_("Withdraw it"), _return_word(user, WITHDRAW_WORDS)),
                ]
            )
        )
    elif view.state == "rejected" and view.reason:
        lines.append(_("Reason: {reason}", reason=view.reason))
    elif view.state == "approved":
        lines.append(
            _(
                "Arrive on {date} and show your pass code to the guard at the gate.",
                date=str(view.arrive_on),
            )
        )
        lines.append(options([(_("Withdraw it"), _return_word(user, WITHDRAW_WORDS))]))
    return "\n".join(lines)


def _summary(
    batch: str, day: date | str, transport: str, number: str, region: str, _: Translate
) -> str:
    return _(
        "{batch}; arriving {date} by {transport} {number}, from {region}.",
        batch=batch,
        date=str(day),
        transport=_(TRANSPORT_NAMES.get(transport, transport)),
        number=number,
        region=region,
    )


def _batch_question(found: Eligibility, _: Translate) -> str:
    return (
        _("Which batch are you returning with?")
        + "\n"
        + options(
            [
                (f"{b.name} ({b.arrive_from}–{b.arrive_to})", b.code)
                for b in found.batches[:MAX_DAYS_SHOWN]
            ]
        )
    )


async def start(
    args: str,
    conv: Conversation,
    user: Principal,
    returns: ReturnService,
    _: Translate,
) -> Message:
    if not user.bound or user.person_id is None:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    sub = args.strip().casefold()
    if sub in WITHDRAW_WORDS:
        return await _withdraw(user, returns, _)
    current = await returns.current(user.person_id)
    open_now = current is not None and current.state in ("pending", "approved")
    if sub in CHANGE_WORDS:
        if current is None or current.state != "pending":
            return Text(_("You have no application waiting for approval to change."))
        found = await returns.eligibility(user.person_id)
        if found is None or not found.batches:
            return Text(_("No return batch is open to your unit any more."))
        conv.goto(BATCH, change=True)
        return Text(_batch_question(found, _))
    if open_now:
        assert current is not None
        return Text(_view(current, user, _))
    found = await returns.eligibility(user.person_id)
    if found is None:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    if not found.ok:
        text = _problems(found, user, _)
        if current is not None:
            text = _view(current, user, _) + "\n\n" + text
        return Text(text)
    conv.goto(BATCH)
    before = _view(current, user, _) + "\n\n" if current is not None else ""
    return Text(
        before
        + _("Application to return to campus. Send cancel at any step to stop.")
        + "\n"
        + _batch_question(found, _)
    )


async def _withdraw(user: Principal, returns: ReturnService, _: Translate) -> Message:
    assert user.person_id is not None
    result = await returns.withdraw(user.person_id)
    if result.outcome is Outcome.WITHDRAWN and result.application_id is not None:
        return Text(
            _(
                "Your return application {ref} is withdrawn; its place is free again. "
                "Send {word} to apply again.",
                ref=ref(result.application_id),
                word=kw.RETURN.text(user.locale),
            )
        )
    return Text(_("You have no open application to withdraw."))


def _days_question(days: list[tuple[date, int]], _: Translate) -> str:
    shown = days[:MAX_DAYS_SHOWN]
    text = _("Which day will you arrive? Days without places left are not shown.") + "\n"
    text += options(
        [(_("{date} ({left} left)", date=str(d), left=left), str(d)) for d, left in shown]
    )
    if len(days) > len(shown):
        text += "\n" + _("Or send another date of the window as YYYY-MM-DD.")
    return text


def _unbound(conv: Conversation, _: Translate) -> Message:
    conv.finish()
    return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))


async def got_batch(
    text: str, conv: Conversation, user: Principal, returns: ReturnService, _: Translate
) -> Message:
    if user.person_id is None:  # unbound since the application began
        return _unbound(conv, _)
    batch = await returns.batch(user.person_id, text[:64])
    if batch is None:
        found = await returns.eligibility(user.person_id)
        if found is None or not found.batches:
            conv.finish()
            return Text(_("No return batch is open to your unit any more."))
        return Text(_("Please pick one of these batches.") + "\n" + _batch_question(found, _))
    days = await returns.days(batch)
    if not days:
        return Text(
            _(
                "Every day of {batch} is full. Please pick another batch, or send cancel.",
                batch=batch.name,
            )
        )
    conv.goto(DATE, batch=batch.code, batch_name=batch.name)
    return Text(_days_question(days, _))


async def got_date(
    text: str, conv: Conversation, user: Principal, returns: ReturnService, _: Translate
) -> Message:
    if user.person_id is None:  # unbound since the application began
        return _unbound(conv, _)
    batch = await returns.batch(user.person_id, str(conv.data.get("batch", "")))
    if batch is None:
        conv.finish()
        return Text(
            _(
                "That batch is no longer open. Send {word} to start again.",
                word=kw.RETURN.text(user.locale),
            )
        )
    days = await returns.days(batch)
    try:
        day = date.fromisoformat(text.strip()[:10])
    except ValueError:
        day = None
    if day is None or day not in {d for d, _left in days}:
        return Text(_("Please pick a day with places left.") + "\n" + _days_question(days, _))
    conv.goto(TRANSPORT, day=day.isoformat())
    return Text(_transport_question(_))


def _transport_question(_: Translate) -> str:
    return (
        _("How will you travel?") + "\n" + options([(_(TRANSPORT_NAMES[t]), t) for t in TRANSPORTS])
    )


async def got_transport(text: str, conv: Conversation, _: Translate) -> Message:
    value = text.strip().casefold()
    transport = _TRANSPORT_WORDS.get(value, value)
    if transport not in TRANSPORTS:
        labels = {_(TRANSPORT_NAMES[t]).casefold(): t for t in TRANSPORTS}
        transport = labels.get(value, "")
    if transport not in TRANSPORTS:
        return Text(_transport_question(_))
    conv.goto(NUMBER, transport=transport)
    return Text(_(NUMBER_HINTS[transport]))


async def got_number(text: str, conv: Conversation, _: Translate) -> Message:
    transport = str(conv.data.get("transport", "other"))
    try:
        number = check_number(transport, text)
    except ValueError:
        return Text(
            _("That does not look right.")
            + " "
            + _(NUMBER_HINTS.get(transport, NUMBER_HINTS["other"]))
        )
    conv.goto(REGION, number=number)
    return Text(_("Where do you travel from? Send the city or region (e.g. 湖北省武汉市)."))


async def got_region(text: str, conv: Conversation, user: Principal, _: Translate) -> Message:
    try:
        region = check_region(text)
    except ValueError:
        return Text(_("Please send the region in plain words, at most 100 characters."))
    conv.goto(CONFIRM, region=region)
    data = conv.data
    confirm = _word(user.locale, ("确认", "confirm"))
    return Text(
        _("Please check your application:")
        + "\n"
        + _summary(
            str(data.get("batch_name", "")),
            str(data.get("day", "")),
            str(data.get("transport", "")),
            str(data.get("number", "")),
            region,
            _,
        )
        + "\n"
        + options([(_("Submit"), confirm), (_("Cancel"), kw.CANCEL.text(user.locale))])
    )


async def got_confirm(
    text: str, conv: Conversation, user: Principal, returns: ReturnService, _: Translate
) -> Message:
    if user.person_id is None:  # unbound since the application began
        return _unbound(conv, _)
    if text.strip().casefold() not in CONFIRM_WORDS and text.strip() != _("Submit"):
        confirm = _word(user.locale, ("确认", "confirm"))
        return Text(
            _("Send {confirm} to submit, or cancel to stop.", confirm=confirm)
            + "\n"
            + options([(_("Submit"), confirm), (_("Cancel"), kw.CANCEL.text(user.locale))])
        )
    data = conv.data
    conv.finish()
    try:
        form = Form(
            batch_code=str(data["batch"]),
            arrive_on=date.fromisoformat(str(data["day"])),
            transport=str(data["transport"]),
            transport_no=str(data["number"]),
            region=str(data["region"]),
        )
    except (KeyError, ValueError):
        return Text(
            _(
                "The application was interrupted. Please send {word} to start again.",
                word=kw.RETURN.text(user.locale),
            )
        )
    if data.get("change"):
        result = await returns.change(user.person_id, form)
    else:
        result = await returns.submit(user.person_id, form)
    return Text(_outcome(result, user, _))


def _outcome(result: Result, user: Principal, _: Translate) -> str:
    again = kw.RETURN.text(user.locale)
    application = ref(result.application_id) if result.application_id else ""
    match result.outcome:
        case Outcome.SUBMITTED:
            return _(
                "Submitted: application {ref}. It goes to your counsellor first; we will tell "
                "you at each step. Send {word} to see it, change it or withdraw it.",
                ref=application,
                word=again,
            )
        case Outcome.AUTO_APPROVED:
            return _(
                "Submitted and approved automatically by the campus rules: application {ref}. "
                "Send {word} to see it.",
                ref=application,
                word=again,
            )
        case Outcome.CHANGED:
            return _(
                "Changed: application {ref} goes for approval again from the first step.",
                ref=application,
            )
        case Outcome.FULL:
            return _(
                "Sorry, the last place of that day was just taken. "
                "Send {word} to pick another day.",
                word=again,
            )
        case Outcome.BAD_DATE | Outcome.NO_BATCH:
            return _("That batch or day is no longer open. Send {word} to start again.", word=again)
        case Outcome.INELIGIBLE if result.eligibility is not None:
            return _problems(result.eligibility, user, _)
        case _:
            return _("You have no application waiting for approval to change.")


# -- approvers --------------------------------------------------------------------------------


def _english(text: str) -> bool:
    command, _args = split_command(text)
    return command in (kw.APPROVE_RETURN.en, kw.REJECT_RETURN.en)


async def approve(
    text: str,
    args: str,
    user: Principal,
    returns: ReturnService,
    registration: RegistrationService,
    accounts: AccountService,
    _: Translate,
) -> Message:
    english = _english(text)
    first = args.strip().split(maxsplit=1)[0] if args.strip() else ""
    if english and first.isdigit():
        return await register.approve(args, user, registration, accounts, _)
    return await _decide(first, "", user, returns, _, approve=True)


async def reject(
    text: str,
    args: str,
    conv: Conversation,
    user: Principal,
    returns: ReturnService,
    registration: RegistrationService,
    accounts: AccountService,
    _: Translate,
) -> Message:
    english = _english(text)
    parts = args.strip().split(maxsplit=1)
    first = parts[0] if parts else ""
    if english and first.isdigit():
        return await register.reject(args, user, registration, accounts, _)
    reason = parts[1] if len(parts) > 1 else ""
    if not reason:
        number = parse_ref(first, bare_digits=True)
        if number is None or user.person_id is None or user.state != "active":
            return await _decide(first, "", user, returns, _, approve=False)
        refused = await returns.waits_for(user.person_id, number)
        if refused is not None:  # say so now, rather than ask for a reason first
            return _decided(refused, number, _)
        conv.goto(REJECT_REASON, application=number)
        return Text(
            _(
                "Why is application {ref} rejected? Send the reason (the student will see it).",
                ref=ref(number),
            )
        )
    return await _decide(first, reason, user, returns, _, approve=False)


async def got_reject_reason(
    text: str, conv: Conversation, user: Principal, returns: ReturnService, _: Translate
) -> Message:
    number = conv.data.get("application")
    try:
        reason = check_reason(text)
    except ValueError:
        return Text(_("Please send the reason in plain words, at most 200 characters."))
    conv.finish()
    return await _decide(f"A{number}", reason, user, returns, _, approve=False)


async def _decide(
    given: str,
    reason: str,
    user: Principal,
    returns: ReturnService,
    _: Translate,
    *,
    approve: bool,
) -> Message:
    if user.person_id is None or user.state != "active":
        return Text(_("Only the approvers an application was sent to can decide it."))
    word = (kw.APPROVE_RETURN if approve else kw.REJECT_RETURN).text(user.locale)
    number = parse_ref(given, bare_digits=True)
    if number is None:
        usage = "A12" if approve else _("A12 <reason>")
        return Text(_("Send {command} {usage}.", command=word, usage=usage))
    if reason:
        try:
            reason = check_reason(reason)
        except ValueError:
            return Text(_("Please send the reason in plain words, at most 200 characters."))
    decision = await returns.decide(user.person_id, number, approve, reason)
    return _decided(decision, number, _)


def _decided(decision: Decision, number: int, _: Translate) -> Message:
    match decision:
        case Decision.APPROVED:
            return Text(_("Approved {ref}. The student has been told.", ref=ref(number)))
        case Decision.PASSED_ON:
            return Text(
                _(
                    "Approved {ref}; it goes on to the next step. The student has been told.",
                    ref=ref(number),
                )
            )
        case Decision.REJECTED:
            return Text(_("Rejected {ref}. The student has been told why.", ref=ref(number)))
        case Decision.NOT_PENDING:
            return Text(_("No application {ref} is waiting for a decision.", ref=ref(number)))
        case Decision.NOT_ALLOWED:
            return Text(_("Application {ref} is not waiting for you.", ref=ref(number)))


async def pending(user: Principal, returns: ReturnService, _: Translate) -> Message:
    if user.person_id is None or user.state != "active":
        return Text(_("Only the approvers an application was sent to can decide it."))
    items, total = await returns.pending(user.person_id)
    if not items:
        return Text(_("No return application is waiting for you."))
    yes = kw.APPROVE_RETURN.text(user.locale)
    no = kw.REJECT_RETURN.text(user.locale)
    lines = [_("Return applications waiting for you: {count}", count=total)]
    for item in items:
        lines.append(
            _(
                "{ref} {name} ({person_no}), {batch}, arriving {date}, {step}",
                ref=ref(item.id),
                name=item.masked_name,
                person_no=item.person_no,
                batch=item.batch,
                date=str(item.arrive_on),
                step=step_label(item.step_name, _),
            )
        )
        lines.append(
            options(
                [
                    (_("Approve {ref}", ref=ref(item.id)), f"{yes} {ref(item.id)}"),
                    (_("Reject {ref}", ref=ref(item.id)), f"{no} {ref(item.id)}"),
                ]
            )
        )
    if total > len(items):
        lines.append(_("The oldest {shown} are shown; decide them to see more.", shown=len(items)))
    return Text("\n".join(lines))
