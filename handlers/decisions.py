"""How an access decision reads: to the guard who scanned, and to the person checking in.

A guard sees pass / no pass, the masked name, category and unit, and on ⛔ the reason. The
reason for a refusal because of health says only that: "not permitted by health status",
never the colour or anything of the report (DESIGN.md: the guard sees nothing of the health
report; the person can show their own card if they wish). A person checking in themselves
is told their own status by name.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.i18n import N_, Translate
from bot.passcards import STATUS_NAMES
from campus.access.duty import IN
from campus.access.gate import Decision
from campus.access.policies import Reason

PASS, NO_PASS = "✅", "⛔"

CATEGORY_NAMES = {
    "student": N_("student"),
    "faculty": N_("faculty"),
    "staff": N_("staff"),
    "family": N_("family member"),
    "contractor": N_("contractor"),
    "vendor": N_("vendor"),
    "partner": N_("partner"),
    "resident": N_("community resident"),
    "temporary": N_("temporary person"),
}

REASONS = {
    Reason.INVALID_CODE: N_("not a valid pass code of this campus"),
    Reason.EXPIRED_CODE: N_("the code has expired; ask them to open a fresh one"),
    Reason.UNKNOWN_PERSON: N_("no such person on record"),
    Reason.INACTIVE: N_("campus record not active"),
    Reason.STATUS: N_("not permitted by health status"),
    Reason.CATEGORY: N_("not open to this category of person"),
    Reason.NOT_RESIDENT: N_("not a resident of this place"),
    Reason.NOT_RETURNED: N_("not yet confirmed back on campus"),
    Reason.CLOSED: N_("outside opening hours"),
    Reason.FULL: N_("the place is full"),
    Reason.NO_POLICY: N_("this place's access rules are not configured"),
}


def _reason(decision: Decision, _: Translate, *, own: bool) -> str:
    reason = decision.reason
    assert reason is not None
    if own and reason is Reason.STATUS and decision.status in STATUS_NAMES:
        return _(
            "your health status ({status}) does not permit entry here",
            status=_(STATUS_NAMES[decision.status]),
        )
    text = _(REASONS[reason])
    if reason is Reason.CLOSED and decision.policy is not None and decision.policy.windows:
        text += f" ({decision.policy.hours()})"
    return text


def _when(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.hour:02d}:{local.minute:02d}"  # as %H:%M, without strftime's cost


def for_guard(decision: Decision, tz: ZoneInfo, _: Translate) -> str:
    way = _("entry") if decision.direction == IN else _("exit")
    verdict = _("Pass") if decision.allowed else _("No pass")
    lines = [f"{PASS if decision.allowed else NO_PASS} {verdict} · {way}"]
    who = decision.identity
    if who is not None:
        category = _(CATEGORY_NAMES[who.category]) if who.category in CATEGORY_NAMES else ""
        lines.append(" · ".join(part for part in (who.masked_name, category, who.unit) if part))
    if not decision.allowed:
        lines.append(_("Reason: {reason}", reason=_reason(decision, _, own=False)))
    lines.append(f"{decision.place.name} · {_when(decision.at, tz)}")
    return "\n".join(lines)


def for_person(decision: Decision, tz: ZoneInfo, _: Translate) -> str:
    place, when = decision.place.name, _when(decision.at, tz)
    if decision.direction != IN:
        if decision.allowed:
            return f"{PASS} " + _("Exit from {place} recorded at {time}.", place=place, time=when)
        return f"{NO_PASS} " + _("Exit from {place} not recorded.", place=place)
    if decision.allowed:
        return f"{PASS} " + _("You may enter {place}. Recorded at {time}.", place=place, time=when)
    return (
        f"{NO_PASS} "
        + _("You may not enter {place}.", place=place)
        + "\n"
        + _("Reason: {reason}", reason=_reason(decision, _, own=True))
    )
