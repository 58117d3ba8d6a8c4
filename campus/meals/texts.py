"""How meals read in the chat: prices, slots, days, and the canteen's per-slot counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from bot.i18n import N_, Translate
from campus.health.explain import short_date
from campus.meals.summary import SlotCount

SLOT_NAMES = {"breakfast": N_("breakfast"), "lunch": N_("lunch"), "dinner": N_("dinner")}
MAX_BYTES = 2000  # WeChat refuses a text (passive reply or customer-service) over 2,048 bytes
NOTE_BYTES = 120  # kept for the line that says what was cut


def money(cents: int) -> str:
    """¥15.00 from 1500 (prices are integer cents everywhere; this is only how they read)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}¥{whole}.{part:02d}"


def slot_name(slot: str, _: Translate) -> str:
    return _(SLOT_NAMES.get(slot, slot))


def day_label(day: date, today: date, locale: str, _: Translate) -> str:
    label = short_date(day, locale)
    if day == today:
        return _("{date} (today)", date=label)
    if (day - today).days == 1:
        return _("{date} (tomorrow)", date=label)
    return label


def meal_label(day: date, slot: str, today: date, locale: str, _: Translate) -> str:
    sep = "" if locale == "zh_CN" else " "
    return f"{day_label(day, today, locale, _)}{sep}{slot_name(slot, _)}"


def clock_time(at: datetime, tz: ZoneInfo, today: date, locale: str, _: Translate) -> str:
    local = at.astimezone(tz)
    return f"{day_label(local.date(), today, locale, _)} {local:%H:%M}"


def render_counts(
    counts: Sequence[SlotCount], today: date, locale: str, _: Translate, *, slot: str | None = None
) -> list[str]:
    """Lines per canteen and slot: each item's portions of its capacity (delivered, picked
    up), then the delivered portions per building. Empty when there is no menu."""
    groups: dict[tuple[str, str], list[SlotCount]] = defaultdict(list)
    for count in counts:
        if slot is None or count.slot == slot:
            groups[(count.canteen_name, count.slot)].append(count)
    lines: list[str] = []
    for (canteen, meal_slot), items in groups.items():  # counts come sorted by canteen, slot
        day = items[0].day
        lines.append(f"【{canteen} · {meal_label(day, meal_slot, today, locale, _)}】")
        for c in items:
            lines.append(
                _(
                    "{item}: {ordered} of {capacity} portions (delivery {delivered}, "
                    "pick-up {pickup})",
                    item=c.item_name,
                    ordered=c.ordered,
                    capacity=c.capacity,
                    delivered=c.delivered,
                    pickup=c.pickup,
                )
            )
        per_building: dict[str, int] = defaultdict(int)
        unplaced = 0
        for c in items:
            for b in c.buildings:
                per_building[b.name] += b.portions
            unplaced += c.delivered - sum(b.portions for b in c.buildings)
        if per_building or unplaced:
            parts = [
                f"{name} {n}"
                for name, n in sorted(per_building.items(), key=lambda kv: (-kv[1], kv[0]))
            ]
            if unplaced:
                parts.append(_("no home building {count}", count=unplaced))
            sep = "，" if locale == "zh_CN" else ", "
            lines.append(_("Delivery by building: {list}", list=sep.join(parts)))
    return lines


def fit(
    lines: Sequence[str],
    _: Translate,
    *,
    tail: str = "",
    more: Callable[[int], str] | None = None,
) -> str:
    """Join lines, cut to what one WeChat text can carry with `tail` (never cut) after them.

    A cut is noted: `more(count)`, or by default that the orders export has every line.
    """
    room = MAX_BYTES - (len(tail.encode()) + 1 if tail else 0)
    if len("\n".join(lines).encode()) <= room:
        return "\n".join([*lines, tail] if tail else lines)
    budget = room - NOTE_BYTES
    kept: list[str] = []
    size = -1  # no newline before the first line
    for i, line in enumerate(lines):
        size += len(line.encode()) + 1
        if size > budget:
            count = len(lines) - i
            kept.append(
                more(count)
                if more is not None
                else _(
                    "… and {count} more lines (healthbot export orders has them all).",
                    count=count,
                )
            )
            break
        kept.append(line)
    return "\n".join([*kept, tail] if tail else kept)
