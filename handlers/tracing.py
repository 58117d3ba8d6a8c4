"""Health officers' `追踪 <person_no> [days]` (a trace: summary in chat, the full list by a
signed link) and `事件 …` (incidents: open, mark close contacts, show, close).

Anyone else gets the ordinary answer to an unknown message: the commands do not exist for
them, and they learn nothing about who is traced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from bot.dispatch.state import Conversation
from bot.i18n import Translate
from bot.replies import Message, Text, options
from bot.wechat.messages import Incoming
from campus.accounts import Principal
from campus.health import explain
from campus.identity import mask_name
from campus.tracing.incidents import (
    IncidentService,
    IncidentView,
    Marked,
    Opened,
    Refusal,
    Refused,
)
from campus.tracing.service import OFFICER_ROLE, TraceRefused, TraceResult, TraceService
from handlers import help
from handlers import keywords as kw
from handlers.commands import Command

SHOWN = 10  # contacts listed in chat; the link has them all
MAX_REPLY_BYTES = 2000  # WeChat refuses text replies over 2,048 bytes
_NO = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID = re.compile(r"^#?(\d{1,12})$")
_SPLIT = re.compile(r"[,，\s]+")


def _officer(user: Principal) -> bool:
    return user.bound and user.has_role(OFFICER_ROLE)


async def _unknown(
    msg: Incoming, conv: Conversation, user: Principal, commands: Sequence[Command], _: Translate
) -> Message:
    return await help.fallback(msg, conv, user, commands, _)


def _fit(lines: list[str], tail: list[str]) -> str:
    """The lines that fit in one reply with `tail` after them."""
    kept: list[str] = []
    for line in lines:
        if len("\n".join([*kept, line, *tail]).encode()) > MAX_REPLY_BYTES:
            break
        kept.append(line)
    return "\n".join([*kept, *tail])


def _contact_lines(result: TraceResult, locale: str, tz: ZoneInfo, _: Translate) -> list[str]:
    lines = []
    for rank, c in enumerate(result.contacts[:SHOWN], 1):
        main = c.main
        lines.append(
            _(
                "{rank}. {name} ({person_no}) — {place}, {time}, {minutes} min",
                rank=rank,
                name=mask_name(c.name),
                person_no=c.person_no,
                place=main.place_name,
                time=explain.short_time(main.overlap_from, tz, locale),
                minutes=c.overlap_minutes,
            )
        )
    if len(result.contacts) > SHOWN:
        lines.append(_("… and {count} more", count=len(result.contacts) - SHOWN))
    return lines


def _link_line(tracing: TraceService, result: TraceResult, user: Principal, _: Translate) -> str:
    assert user.person_id is not None
    url = tracing.link(result, user.person_id, user.locale)
    return _(
        'The full list: <a href="{url}">open</a> (valid {minutes} minutes).',
        url=url,
        minutes=tracing.rules.link_minutes,
    )


async def trace(
    args: str,
    msg: Incoming,
    conv: Conversation,
    user: Principal,
    commands: Sequence[Command],
    tracing: TraceService,
    _: Translate,
) -> Message:
    """追踪 <person_no> [days]"""
    if not _officer(user):
        return await _unknown(msg, conv, user, commands, _)
    parts = args.split()
    usage = Text(
        _(
            "Send {command} <person no.> [days], e.g. {command} S001 14.",
            command=kw.TRACE.text(user.locale),
        )
    )
    if not 1 <= len(parts) <= 2 or not _NO.match(parts[0]):
        return usage
    days = None
    if len(parts) == 2:
        if not parts[1].isdigit() or not 1 <= int(parts[1]) <= tracing.rules.retention_days:
            return Text(
                _(
                    "Days must be a whole number from 1 to {max}.",
                    max=tracing.rules.retention_days,
                )
            )
        days = int(parts[1])
    result = await tracing.run(
        parts[0], actor=f"person:{user.person_id}", officer_id=user.person_id, days=days
    )
    if result is TraceRefused.NOT_ALLOWED:
        return await _unknown(msg, conv, user, commands, _)
    if result is TraceRefused.UNKNOWN_PERSON:
        return Text(_("There is nobody with person number {person_no}.", person_no=parts[0][:64]))
    if not isinstance(result, TraceResult):
        return usage
    head = _(
        "Trace of {name} ({person_no}), last {days} days, margin {margin} min: {count} contact(s).",
        name=mask_name(result.case.name),
        person_no=result.case.person_no,
        days=result.days,
        margin=result.margin_minutes,
        count=len(result.contacts),
    )
    if not result.contacts:
        return Text(head)
    lines = [head, *_contact_lines(result, user.locale, tracing.tz, _)]
    return Text(_fit(lines, [_link_line(tracing, result, user, _)]))


def _refusal(refusal: Refusal, user: Principal, person_no: str, _: Translate) -> Text:
    word = kw.INCIDENT.text(user.locale)
    match refusal.reason:
        case Refused.UNKNOWN_PERSON:
            return Text(_("There is nobody with person number {person_no}.", person_no=person_no))
        case Refused.UNKNOWN_INCIDENT:
            return Text(_("There is no incident with that number."))
        case Refused.ALREADY_OPEN:
            return Text(
                _(
                    "Incident #{incident} is already open for this person. "
                    "Send {command} to see it.",
                    incident=refusal.incident_id,
                    command=f"{word} {kw.SHOW_WORD.text(user.locale)} {refusal.incident_id}",
                )
            )
        case Refused.CLOSED:
            return Text(_("Incident #{incident} is closed.", incident=refusal.incident_id))
    return Text(_usage(user, _))


def _usage(user: Principal, _: Translate) -> str:
    word = kw.INCIDENT.text(user.locale)
    loc = user.locale
    return _(
        "Incidents:\n{open} <person no.> <note> — open one (red, traced, told)\n"
        "{mark} <no.> <all|person no.,…> — mark close contacts yellow\n"
        "{show} <no.> — the incident and its log\n"
        "{close} <no.> <note> — close it",
        open=word,
        mark=f"{word} {kw.MARK_WORD.text(loc)}",
        show=f"{word} {kw.SHOW_WORD.text(loc)}",
        close=f"{word} {kw.CLOSE_WORD.text(loc)}",
    )


async def incident(
    args: str,
    msg: Incoming,
    conv: Conversation,
    user: Principal,
    commands: Sequence[Command],
    incidents: IncidentService,
    tracing: TraceService,
    _: Translate,
) -> Message:
    """事件 <person_no> <note> | 事件 标记 <id> 全部|<nos> | 事件 查看|关闭 <id> [<note>]"""
    if not _officer(user):
        return await _unknown(msg, conv, user, commands, _)
    parts = args.split(maxsplit=1)
    if not parts:
        return Text(_usage(user, _))
    sub, rest = parts[0].casefold(), parts[1] if len(parts) > 1 else ""
    actor = f"person:{user.person_id}"
    if sub in kw.MARK_WORD.words:
        return await _mark(rest, user, incidents, actor, _)
    if sub in kw.SHOW_WORD.words or sub in kw.CLOSE_WORD.words:
        head, _sep, note = rest.strip().partition(" ")
        number = _ID.match(head)
        if number is None:
            return Text(_usage(user, _))
        if sub in kw.SHOW_WORD.words:
            shown = await incidents.show(int(number[1]), actor=actor, officer_id=user.person_id)
        else:
            shown = await incidents.close(
                int(number[1]), note, actor=actor, officer_id=user.person_id
            )
        if isinstance(shown, Refusal):
            if shown.reason is Refused.NOT_ALLOWED:
                return await _unknown(msg, conv, user, commands, _)
            return _refusal(shown, user, "", _)
        return Text(_view(shown, sub in kw.CLOSE_WORD.words, user, tracing, _))
    if not _NO.match(parts[0]) or not rest.strip():
        return Text(_usage(user, _))
    opened = await incidents.open(parts[0], rest, actor=actor, officer_id=user.person_id)
    if isinstance(opened, Refusal):
        if opened.reason is Refused.NOT_ALLOWED:
            return await _unknown(msg, conv, user, commands, _)
        return _refusal(opened, user, parts[0][:64], _)
    return Text(_opened(opened, user, tracing, _))


def _opened(opened: Opened, user: Principal, tracing: TraceService, _: Translate) -> str:
    result = opened.trace
    loc = user.locale
    head = _(
        "Incident #{incident} opened for {name} ({person_no}): {before} → {after}; they and "
        "their responsible persons have been told. {count} contact(s) found "
        "(last {days} days, margin {margin} min).",
        incident=opened.incident_id,
        name=mask_name(result.case.name),
        person_no=result.case.person_no,
        before=explain.colour(opened.before, _),
        after=explain.colour(opened.after, _),
        count=len(result.contacts),
        days=result.days,
        margin=result.margin_minutes,
    )
    if not result.contacts:
        return head
    word = kw.INCIDENT.text(loc)
    pairs = [
        (
            _("Mark all {count} as close contacts", count=len(result.contacts)),
            f"{word} {kw.MARK_WORD.text(loc)} {opened.incident_id} {kw.ALL_WORD.text(loc)}",
        ),
        (_("Show the incident"), f"{word} {kw.SHOW_WORD.text(loc)} {opened.incident_id}"),
    ]
    tail = [_link_line(tracing, result, user, _), options(pairs)]
    return _fit([head, *_contact_lines(result, loc, tracing.tz, _)], tail)


async def _mark(
    rest: str, user: Principal, incidents: IncidentService, actor: str, _: Translate
) -> Message:
    head, _sep, which = rest.strip().partition(" ")
    number = _ID.match(head)
    chosen = [w for w in _SPLIT.split(which.strip()) if w]
    if number is None or not chosen or not all(_NO.match(w) for w in chosen):
        return Text(_usage(user, _))
    everyone = len(chosen) == 1 and chosen[0].casefold() in kw.ALL_WORD.words
    result = await incidents.mark(
        int(number[1]),
        None if everyone else chosen,
        actor=actor,
        officer_id=user.person_id,
    )
    if isinstance(result, Refusal):
        return _refusal(result, user, "", _)
    return Text(_marked(result, _))


def _marked(result: Marked, _: Translate) -> str:
    lines = [
        _(
            "Incident #{incident}: {count} marked as close contacts; they and their "
            "responsible persons have been told.",
            incident=result.incident_id,
            count=len(result.marked),
        )
    ]
    if result.already:
        lines.append(_("Marked before: {list}", list=", ".join(result.already)))
    if result.not_contacts:
        lines.append(
            _("Not contacts of this incident: {list}", list=", ".join(result.not_contacts))
        )
    return _fit(lines, [])


def _view(
    view: IncidentView, closed_now: bool, user: Principal, tracing: TraceService, _: Translate
) -> str:
    loc, tz = user.locale, tracing.tz
    marked = sum(1 for c in view.contacts if c.marked_at is not None)
    state = _("open") if view.state == "open" else _("closed")
    lines = []
    if closed_now:
        lines.append(_("Incident #{incident} closed.", incident=view.incident_id))
    lines.append(
        _(
            "Incident #{incident} ({state}) for {name} ({person_no}): {note}",
            incident=view.incident_id,
            state=state,
            name=mask_name(view.name),
            person_no=view.person_no,
            note=view.note,
        )
    )
    lines.append(
        _(
            "Opened {time}; {count} contact(s), {marked} marked as close contacts.",
            time=explain.short_time(view.opened_at, tz, loc),
            count=len(view.contacts),
            marked=marked,
        )
    )
    labels = {
        "opened": _("opened"),
        "status": _("status set"),
        "traced": _("traced"),
        "marked": _("marked close contacts"),
        "read": _("read"),
        "closed": _("closed"),
    }
    lines.append(_("Log:"))
    for entry in view.log[-12:]:
        detail = entry.detail if entry.action in ("opened", "closed", "marked") else ""
        label = labels.get(entry.action, entry.action)
        lines.append(
            f"{explain.short_time(entry.at, tz, loc)} {label}" + (f": {detail}" if detail else "")
        )
    return _fit(lines, [])
