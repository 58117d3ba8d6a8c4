"""At each slot's ordering deadline, canteen staff get the slot's final counts pushed.

The job runs every few minutes (rules file `schedule.meals_deadline_push`) and pushes every
slot whose deadline passed within the last `CATCH_UP`, once per staff member and slot (the
outbox key), so a missed run is made up and a repeated run pushes nothing twice.

Before counting, pick-up orders of persons told to stay in since they ordered (red, or a
status of `meals.delivery.statuses`) become deliveries to their building: the final counts
never send them to a canteen queue.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import translator
from campus.meals.eligibility import building_of
from campus.meals.rules import SLOTS, MealRules
from campus.meals.summary import PLACED, slot_counts
from campus.meals.texts import fit, meal_label, render_counts
from campus.notifications import Notifications, Push
from storage.models import Person
from storage.models_meals import MealItem, MealOrder

CATCH_UP = timedelta(hours=6)
ROLE = "canteen"


def due_slots(rules: MealRules, now: datetime, tz: ZoneInfo) -> list[tuple[date, str]]:
    """(day, slot) pairs whose deadline is in (now - CATCH_UP, now]."""
    today = now.astimezone(tz).date()
    due = []
    for offset in range(-1, 9):  # a deadline is at most 7 days before its day
        day = today + timedelta(days=offset)
        for slot in SLOTS:
            deadline = rules.deadline(day, slot, tz)
            if now - CATCH_UP < deadline <= now:
                due.append((day, slot))
    return due


async def canteen_staff(session: AsyncSession) -> list[tuple[int, str]]:
    """(person id, locale) of active persons with the canteen role."""
    rows = await session.execute(
        select(Person.id, Person.locale, Person.roles).where(
            Person.state == "active", Person.roles.contains(ROLE)
        )
    )
    return [(pid, locale) for pid, locale, roles in rows if ROLE in roles.split(";")]


async def deliver_to_those_kept_in(
    session: AsyncSession, rules: MealRules, day: date, slot: str
) -> int:
    """Turn the slot's pick-up orders of persons now red (or of a delivery status) into
    deliveries to their building; returns how many changed."""
    stmt = (
        select(MealOrder.id, Person.home_place_id)
        .join(MealItem, MealItem.id == MealOrder.item_id)
        .join(Person, Person.id == MealOrder.person_id)
        .where(
            MealItem.day == day,
            MealItem.slot == slot,
            MealOrder.state == PLACED,
            MealOrder.delivery.is_(False),
            Person.status.in_(sorted(rules.delivery_statuses | {"red"})),
        )
    )
    changed = 0
    for order_id, home_place_id in (await session.execute(stmt)).all():
        building = await building_of(session, home_place_id)
        await session.execute(
            update(MealOrder)
            .where(MealOrder.id == order_id, MealOrder.delivery.is_(False))
            .values(delivery=True, building_id=building.id if building is not None else None)
            .execution_options(synchronize_session=False)
        )
        changed += 1
    return changed


async def push_final_counts(
    sessions: async_sessionmaker[AsyncSession],
    notifications: Notifications,
    rules: MealRules,
    tz: ZoneInfo,
    now: datetime,
) -> tuple[int, int]:
    """Queue the final counts of slots just closed; returns (slots, pushes queued)."""
    slots = due_slots(rules, now, tz)
    if not slots:
        return 0, 0
    today = now.astimezone(tz).date()
    queued = closed = 0
    async with sessions.begin() as session:
        staff = await canteen_staff(session)
        for day, slot in slots:
            await deliver_to_those_kept_in(session, rules, day, slot)
            counts = [c for c in await slot_counts(session, day=day) if c.slot == slot]
            if not counts:
                continue  # no menu for this slot
            closed += 1
            pushes = []
            for person_id, locale in staff:
                _ = translator(locale)
                lines = [
                    _(
                        "Orders for {meal} are closed. Final counts:",
                        meal=meal_label(day, slot, today, locale, _),
                    ),
                    *render_counts(counts, today, locale, _),
                ]
                pushes.append(
                    Push(
                        person_id,
                        "meals_final_counts",
                        fit(lines, _),
                        f"meals:final:{day}:{slot}:{person_id}",
                    )
                )
            queued += await notifications.enqueue_many(session, pushes, now=now)
    return closed, queued
