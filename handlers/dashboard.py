"""`统计`/`dashboard`: a signed link to the dashboard for responsible persons, health officers
and admins (valid 15 minutes, scoped to the asker's units; admins and health officers see all)."""

from __future__ import annotations

from bot.i18n import Translate
from bot.replies import Message, Text
from campus.accounts import Principal
from campus.dashboard.service import VIEWER_ROLES, DashboardRefused, DashboardService, Refusal
from handlers import keywords as kw


async def dashboard_link(user: Principal, dashboard: DashboardService, _: Translate) -> Message:
    if user.person_id is None or not (user.roles & VIEWER_ROLES) or user.state != "active":
        return Text(
            _("Only responsible persons, health officers and admins can open the dashboard.")
        )
    try:
        offer = await dashboard.offer(user.person_id, user.locale)
    except DashboardRefused as exc:
        if exc.reason is Refusal.NO_UNITS:
            return Text(_("You are not responsible for any unit."))
        return Text(
            _("Only responsible persons, health officers and admins can open the dashboard.")
        )
    until = dashboard.local(offer.expires_at)
    return Text(
        _("Your dashboard (valid until {time}):", time=f"{until:%H:%M}")
        + "\n"
        + f'<a href="{offer.url}">'
        + _("Open the dashboard")
        + "</a>"
        + "\n"
        + _("Send {command} again for a fresh link.", command=kw.DASHBOARD.text(user.locale))
    )
