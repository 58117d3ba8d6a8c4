"""`我的单位`/`myunit`: a responsible person's units at a glance, and registrations to decide."""

from __future__ import annotations

from bot.i18n import Translate
from bot.replies import Message, Text, option
from campus.accounts import Principal
from campus.registration import RegistrationService
from handlers import keywords as kw
from handlers.decisions import CATEGORY_NAMES


async def my_unit(user: Principal, registration: RegistrationService, _: Translate) -> Message:
    if not user.bound or not user.has_role("responsible") or user.state != "active":
        return Text(_("Only responsible persons can see their units."))
    seen = await registration.overview(user.person_no)
    if seen is None:
        return Text(_("You are not responsible for any unit."))
    total = sum(seen.by_category.values())
    lines = [
        _("Your units: {units}", units=", ".join(seen.units)),
        _("Active persons: {count}, bound to WeChat: {bound}.", count=total, bound=seen.bound),
    ]
    for category, count in sorted(seen.by_category.items()):
        lines.append(f"· {_(CATEGORY_NAMES.get(category, category))}: {count}")
    if not seen.pending:
        lines.append(_("No registrations are waiting."))
        return Text("\n".join(lines))
    lines.append(_("Registrations waiting: {count}", count=len(seen.pending)))
    approve, reject = kw.APPROVE_REG.text(user.locale), kw.REJECT_REG.text(user.locale)
    for i, p in enumerate(seen.pending):
        lines.append(
            f"{p.id} {p.masked_name} {_(CATEGORY_NAMES.get(p.category, p.category))}"
            + (f" → {p.valid_until}" if p.valid_until else "")
        )
        lines.append(option(_("Approve"), f"{approve} {p.id}", 2 * i + 1))
        lines.append(option(_("Reject"), f"{reject} {p.id}", 2 * i + 2))
    return Text("\n".join(lines))
