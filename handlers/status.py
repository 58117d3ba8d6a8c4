"""`状态`/`status`: the colour, why, and how many normal days remain; health officers'
`设置状态 <person_no> <colour> <reason>`; responsible persons' `收到` for warnings."""

from __future__ import annotations

import re

from bot.i18n import Translate
from bot.replies import Message, Text, options
from campus.accounts import Principal
from campus.health import explain
from campus.health.engine import Forecast
from campus.health.model import Standing, Status
from campus.health.rules import HealthRules
from campus.health.status import OFFICER_ROLE, OverrideOutcome, StatusService
from campus.health.warnings import WarningService
from handlers import keywords as kw

COLOUR_WORDS = {
    "green": Status.GREEN,
    "绿": Status.GREEN,
    "绿码": Status.GREEN,
    "yellow": Status.YELLOW,
    "黄": Status.YELLOW,
    "黄码": Status.YELLOW,
    "red": Status.RED,
    "红": Status.RED,
    "红码": Status.RED,
}
_IDS = re.compile(r"^\d{1,18}(?:[,，\s]+\d{1,18})*$")


def details(
    standing: Standing,
    forecast: Forecast | None,
    rules: HealthRules,
    _: Translate,
    locale: str,
) -> list[str]:
    """Why the status is what it is, and what it takes to be green again."""
    if standing.status is Status.GREEN:
        return []
    lines = [_("Why:"), explain.reason_lines(standing.reasons, rules, _, locale)]
    if forecast is None or forecast.normal_days_left is None:
        lines.append(_("A health officer will decide when you are green again."))
    elif forecast.clearance_needed and forecast.normal_days_left == 0:
        lines.append(_("Your normal days are complete; a health officer must now clear you."))
    elif forecast.clearance_needed:
        lines.append(
            _(
                "{days} more normal days, then a health officer's clearance, to be green again.",
                days=forecast.normal_days_left,
            )
        )
    else:
        lines.append(
            _("{days} more normal days to be green again.", days=forecast.normal_days_left)
        )
    return lines


async def show_status(user: Principal, health_status: StatusService, _: Translate) -> Message:
    if not user.bound:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    assert user.person_id is not None
    view = await health_status.view(user.person_id)
    if view is None:
        return Text(_("This record is no longer active. Please contact your unit."))
    locale = user.locale
    standing = view.standing
    head = _("Your health status: {colour}", colour=explain.colour(standing.status, _))
    if standing.since is not None and standing.status is not Status.GREEN:
        head += explain.space(locale) + _(
            "(since {time})", time=explain.short_time(standing.since, health_status.tz, locale)
        )
    lines = [head, *details(standing, view.forecast, health_status.rules, _, locale)]
    if view.today is not None:
        lines.append(
            _("Today's report: {report}.", report=explain.report_summary(view.today, _, locale))
        )
        return Text("\n".join(lines))
    lines.append(_("You have not reported today."))
    return Text("\n".join(lines) + "\n" + options([(_("Check in now"), kw.CHECKIN.text(locale))]))


async def set_status(
    args: str, user: Principal, health_status: StatusService, _: Translate
) -> Message:
    """设置状态 <person_no> <green|yellow|red> <reason> (health officers only)."""
    if not user.bound or not user.has_role(OFFICER_ROLE):
        return Text(_("Only health officers can set a status."))
    parts = args.split(maxsplit=2)
    status = COLOUR_WORDS.get(parts[1].casefold()) if len(parts) >= 2 else None
    if len(parts) < 3 or status is None or not parts[2].strip():
        return Text(
            _(
                "Send {command} <person no.> <green|yellow|red> <reason>.",
                command=kw.SET_STATUS.text(user.locale),
            )
        )
    result = await health_status.override(
        parts[0],
        status,
        parts[2],
        actor=f"person:{user.person_id}",
        officer_id=user.person_id,
    )
    match result.outcome:
        case OverrideOutcome.NOT_ALLOWED:
            return Text(_("Only health officers can set a status."))
        case OverrideOutcome.UNKNOWN_PERSON:
            return Text(
                _("There is nobody with person number {person_no}.", person_no=parts[0][:64])
            )
    return Text(
        _(
            "{name} ({person_no}): {before} → {after}. They have been told.",
            name=result.name,
            person_no=result.person_no,
            before=explain.colour(result.before, _),
            after=explain.colour(result.after, _),
        )
    )


async def acknowledge(
    args: str, user: Principal, health_warnings: WarningService, _: Translate
) -> Message:
    """收到 [ids]: acknowledge the warnings sent to me (all of them, or those named)."""
    if not user.bound:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    assert user.person_id is not None
    ids: list[int] | None = None
    if args.strip():
        if not _IDS.match(args.strip()):
            return Text(
                _("Send {word} to acknowledge your warnings.", word=kw.ACK.text(user.locale))
            )
        ids = [int(i) for i in re.split(r"[,，\s]+", args.strip())]
    count = await health_warnings.acknowledge(user.person_id, ids)
    if count == 0:
        return Text(_("No warnings are waiting for your acknowledgement."))
    return Text(_("Acknowledged {count} warning(s). Thank you.", count=count))
