"""Who may order meals, and who has them delivered to their building.

Persons back on campus (persons.returned_at, set by the return feature) may order, and so may
the categories that never left (the rules file's `meals.always`, default faculty and staff).
Meals are delivered to the home building in the first days after arrival, or while the
person's status is one of `meals.delivery.statuses` (told to stay in) or red; everyone else
picks up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from campus.meals.rules import MealRules
from storage.models import Person, Place

# Place kinds that are a building someone lives or works in; a home place of another kind
# (a grid, the campus) is delivered to as it is.
BUILDING_KINDS = frozenset({"dorm", "house", "office", "lab", "teaching", "library", "other"})
_MAX_DEPTH = 16  # the place tree is checked for cycles on import; this is a second guard


class Refusal(StrEnum):
    NOT_ACTIVE = "not_active"
    NOT_BACK = "not_back"


@dataclass(frozen=True, slots=True)
class Eligibility:
    refusal: Refusal | None
    delivery: bool = False

    @property
    def may_order(self) -> bool:
        return self.refusal is None


def decide(person: Person, rules: MealRules, day: date, tz: ZoneInfo) -> Eligibility:
    """May `person` order for `day`, and is it delivered? (The person's live status decides.)"""
    if person.state != "active":
        return Eligibility(Refusal.NOT_ACTIVE)
    if person.returned_at is None and person.category not in rules.always:
        return Eligibility(Refusal.NOT_BACK)
    return Eligibility(None, delivery=delivered(person, rules, day, tz))


def delivered(person: Person, rules: MealRules, day: date, tz: ZoneInfo) -> bool:
    # Red is isolation: whatever the rules file lists, a red person never queues at a canteen.
    if person.status == "red" or person.status in rules.delivery_statuses:
        return True
    if person.returned_at is None:
        return False
    arrived = _local_day(person.returned_at, tz)
    return day < arrived + timedelta(days=rules.delivery_days_after_return)


def _local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


async def building_of(session: AsyncSession, home_place_id: int | None) -> Place | None:
    """The building of a home place: itself or its nearest ancestor of a building kind."""
    if home_place_id is None:
        return None
    home = await session.get(Place, home_place_id)
    place = home
    for _ in range(_MAX_DEPTH):
        if place is None:
            break
        if place.kind in BUILDING_KINDS:
            return place
        if place.parent_id is None:
            break
        place = (
            await session.execute(select(Place).where(Place.id == place.parent_id))
        ).scalar_one_or_none()
    return home
