"""`订餐`/`meal` (menu MEALS): pick a meal, (the canteen, when the menu is long), an item, how
many, confirm; `我的订单`/`my orders` and `取消订单`/`cancelorder` for one's orders;
`订单汇总`/`orders` for canteen staff.

See meals.mmd for the steps. Every pick is a tappable option; whatever is typed instead is
checked, and the question comes again. `取消`/`cancel` stops at any step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from bot.dispatch.state import Conversation
from bot.i18n import Translate
from bot.replies import Message, Text, option, options
from campus.accounts import Principal
from campus.meals.eligibility import Refusal
from campus.meals.ordering import Cancel, MealService, MenuItem, OpenSlot, Outcome
from campus.meals.rules import SLOTS, MealRules
from campus.meals.texts import MAX_BYTES, clock_time, fit, meal_label, money, render_counts
from handlers import keywords as kw
from handlers.commands import Command

SLOT = "meals.slot"
CANTEEN = "meals.canteen"  # only when the slot's menu is longer than one message carries
ITEM = "meals.item"
QUANTITY = "meals.quantity"
CONFIRM = "meals.confirm"

CONFIRM_WORDS = frozenset({"确认", "确定", "是", "好", "confirm", "yes", "y", "ok"})
NO_WORDS = frozenset({"否", "不", "no", "n"})
TODAY_WORDS = frozenset({"今天", "today"})
TOMORROW_WORDS = frozenset({"明天", "tomorrow"})
_MEAL = re.compile(r"^(\d{4}-\d{2}-\d{2})\s+([a-z]+)$")
# Names come from menus.csv and places.csv; a tappable label may not carry markup characters.
_SAFE = str.maketrans({"<": "‹", ">": "›", '"': "”", "&": "＆", "#": "＃", "\n": " "})
# A Chinese keyboard types full-width digits; other digits Unicode knows ("²", "①") are refused.
_FULL_WIDTH = str.maketrans("０１２３４５６７８９", "0123456789")
# Who `帮助`/`help` shows the meal commands to: students (they order once back on campus) and
# the categories that always may (the shipped meals.always). Whether a student is back is not
# part of the chat's principal, so a student not back yet sees them and is told why at `订餐`.
MAY_ORDER = frozenset({"student"}) | MealRules().always


def _safe(name: str) -> str:
    return name.translate(_SAFE)


def _number(value: str, digits: int) -> int | None:
    """A whole number of 1 to `digits` digits (ASCII or full-width), else None."""
    value = value.strip().translate(_FULL_WIDTH)
    if not value.isascii() or not value.isdigit() or len(value) > digits:
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class MealCommand(Command):
    """A meal command in the help list: only for active persons of a category that orders."""

    categories: frozenset[str] = MAY_ORDER

    def visible_to(self, user: Principal) -> bool:
        # Command.visible_to by name: a slotted dataclass breaks the zero-argument super().
        return (
            Command.visible_to(self, user)
            and user.state == "active"
            and user.category in self.categories
        )


def _bind_first(_: Translate) -> Message:
    return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))


def _refused(refusal: Refusal, _: Translate) -> Message:
    if refusal is Refusal.NOT_BACK:
        return Text(
            _(
                "Meal ordering is for people back on campus. Once your arrival is confirmed, "
                "you can order here."
            )
        )
    return Text(_("Your campus record is not active, so you cannot order meals."))


def _slot_lines(slots: list[OpenSlot], meals: MealService, locale: str, _: Translate) -> list[str]:
    today = meals.today()
    lines = [_("Which meal would you like to order?")]
    for n, s in enumerate(slots, 1):
        label = _(
            "{meal} (order by {time}, {count} left)",
            meal=meal_label(s.day, s.slot, today, locale, _),
            time=clock_time(s.deadline, meals.tz, today, locale, _),
            count=s.left,
        )
        lines.append(option(label, f"{s.day.isoformat()} {s.slot}", n))
    return lines


def _more(_: Translate) -> Callable[[int], str]:
    return lambda count: _("… and {count} more.", count=count)


def _canteen_question(items: list[MenuItem], meal: str, _: Translate, why: str = "") -> str:
    """A menu too long for one message: its canteens first (how many portions each has left)."""
    left: dict[tuple[str, str], int] = {}
    for item in items:
        key = (item.canteen_code, item.canteen_name)
        left[key] = left.get(key, 0) + item.left
    lines = [why] if why else []
    lines.append(_("The menu for {meal} is long. Which canteen?", meal=meal))
    for n, ((code, name), count) in enumerate(left.items(), 1):
        label = _("{canteen} ({count} left)", canteen=_safe(name), count=count)
        # Canteen codes are letters, digits, "_", ".", "-": safe in a tap as they are.
        lines.append(option(label, f"{code} {_safe(name)}", n))
    return fit(lines, _, more=_more(_))


def _item_lines(items: list[MenuItem], meal: str, _: Translate) -> list[str]:
    lines = [_("The menu for {meal}:", meal=meal)]
    menu_id = 0
    for item in items:
        label = _(
            "{canteen} · {item} {price} ({count} left)",
            canteen=_safe(item.canteen_name),
            item=_safe(item.name),
            price=money(item.price_cents),
            count=item.left,
        )
        if item.left > 0:
            menu_id += 1
            # The tap sends "<id> <name>": the chat shows what was picked, the id decides.
            lines.append(option(label, f"{item.id} {_safe(item.name)}", menu_id))
        else:
            lines.append(
                _("{canteen} · {item} (sold out)", canteen=item.canteen_name, item=item.name)
            )
    return lines


def _menu_question(
    conv: Conversation, items: list[MenuItem], meal: str, _: Translate, why: str = ""
) -> str:
    """The menu of the conversation's canteen (all canteens until one is picked), or, when
    that is more than one message carries, the canteens to pick from (state CANTEEN)."""
    canteen = conv.data.get("canteen")
    shown = [i for i in items if i.canteen_code == canteen] if canteen else items
    lines = ([why] if why else []) + _item_lines(shown or items, meal, _)
    if canteen or len("\n".join(lines).encode()) <= MAX_BYTES:
        conv.goto(ITEM)
        return fit(lines, _, more=_more(_))
    conv.goto(CANTEEN)
    return _canteen_question(items, meal, _, why)


async def start(conv: Conversation, user: Principal, meals: MealService, _: Translate) -> Message:
    if user.person_id is None:
        return _bind_first(_)
    eligibility = await meals.eligibility(user.person_id)
    if eligibility.refusal is not None:
        return _refused(eligibility.refusal, _)
    slots = await meals.open_slots()
    if not slots:
        conv.finish()
        return Text(_("No menu is open for orders just now. Please look again later."))
    conv.goto(SLOT)
    where = (
        _("Meals are delivered to your building for now.")
        if eligibility.delivery
        else _("You pick up your meals at the canteen.")
    )
    return Text(fit(_slot_lines(slots, meals, user.locale, _), _, tail=where, more=_more(_)))


async def got_slot(
    text: str, conv: Conversation, user: Principal, meals: MealService, _: Translate
) -> Message:
    if user.person_id is None:
        conv.finish()
        return _bind_first(_)
    match = _MEAL.match(text.strip().casefold())
    day = _iso(match[1]) if match else None
    slot = match[2] if match else ""
    if day is None or slot not in SLOTS:
        return await _ask_slot_again(conv, user, meals, _)
    meal = meal_label(day, slot, meals.today(), user.locale, _)
    items = await meals.menu(day, slot)
    if not items:
        why = (
            _("Orders for {meal} are not open yet.", meal=meal)
            if not meals.offered(day)
            else _("Orders for {meal} are closed.", meal=meal)
        )
        return await _ask_slot_again(conv, user, meals, _, why)
    allowance = await meals.allowance(user.person_id, day, slot)
    if allowance <= 0:
        conv.finish()
        return Text(_limit_reached(meals, meal, user, _))
    conv.data.pop("canteen", None)  # picked for another meal before
    conv.goto(ITEM, day=day.isoformat(), slot=slot)
    return Text(_menu_question(conv, items, meal, _))


async def got_canteen(
    text: str, conv: Conversation, user: Principal, meals: MealService, _: Translate
) -> Message:
    day, slot = _iso(str(conv.data.get("day", ""))), str(conv.data.get("slot", ""))
    if user.person_id is None or day is None or slot not in SLOTS:
        conv.finish()
        return Text(_("The order was interrupted. Please send meal to start again."))
    meal = meal_label(day, slot, meals.today(), user.locale, _)
    items = await meals.menu(day, slot)
    if not items:
        return await _ask_slot_again(
            conv, user, meals, _, _("Orders for {meal} are closed.", meal=meal)
        )
    code = text.split(maxsplit=1)[0] if text.strip() else ""
    if code not in {item.canteen_code for item in items}:
        return Text(_canteen_question(items, meal, _, _("Please tap a canteen.")))
    conv.goto(ITEM, day=day.isoformat(), slot=slot, canteen=code)
    return Text(_menu_question(conv, items, meal, _))


async def _ask_slot_again(
    conv: Conversation, user: Principal, meals: MealService, _: Translate, why: str = ""
) -> Message:
    slots = await meals.open_slots()
    if not slots:
        conv.finish()
        return Text(_("No menu is open for orders just now. Please look again later."))
    conv.goto(SLOT)
    lines = _slot_lines(slots, meals, user.locale, _)
    return Text(fit([why, *lines] if why else lines, _, more=_more(_)))


def _limit_reached(meals: MealService, meal: str, user: Principal, _: Translate) -> str:
    return (
        _(
            "You have ordered {limit} portions for {meal}, the most one person may.",
            limit=meals.rules.per_person_limit,
            meal=meal,
        )
        + "\n"
        + option(_("My orders"), kw.MY_ORDERS.text(user.locale), 1)
    )


async def got_item(
    text: str, conv: Conversation, user: Principal, meals: MealService, _: Translate
) -> Message:
    day, slot = _iso(str(conv.data.get("day", ""))), str(conv.data.get("slot", ""))
    if user.person_id is None or day is None or slot not in SLOTS:
        conv.finish()
        return Text(_("The order was interrupted. Please send meal to start again."))
    meal = meal_label(day, slot, meals.today(), user.locale, _)
    item_id = _number(text.split(maxsplit=1)[0], 18) if text.strip() else None
    item = await meals.item(item_id) if item_id is not None else None
    if item is None or item.day != day or item.slot != slot or item.left <= 0:
        items = await meals.menu(day, slot)
        if not items:
            return await _ask_slot_again(
                conv, user, meals, _, _("Orders for {meal} are closed.", meal=meal)
            )
        why = (
            _("{item} is sold out.", item=item.name)
            if item is not None and item.day == day and item.slot == slot
            else _("Please tap an item of the menu.")
        )
        return Text(_menu_question(conv, items, meal, _, why))
    allowance = await meals.allowance(user.person_id, day, slot)
    most = min(allowance, item.left)
    if most <= 0:
        conv.finish()
        return Text(_limit_reached(meals, meal, user, _))
    conv.goto(QUANTITY, item=item.id, most=most)
    return Text(
        _(
            "How many portions of {item} ({price} each)? At most {count}.",
            item=item.name,
            price=money(item.price_cents),
            count=most,
        )
        + "\n"
        + options([(str(n), str(n)) for n in range(1, most + 1)])
    )


async def got_quantity(
    text: str, conv: Conversation, user: Principal, meals: MealService, _: Translate
) -> Message:
    most = conv.data.get("most")
    item_id = conv.data.get("item")
    day, slot = _iso(str(conv.data.get("day", ""))), str(conv.data.get("slot", ""))
    if user.person_id is None or not isinstance(most, int) or not isinstance(item_id, int):
        conv.finish()
        return Text(_("The order was interrupted. Please send meal to start again."))
    quantity = _number(text, 3) or 0
    if not 1 <= quantity <= most:
        return Text(
            _("Please send a whole number from 1 to {count}.", count=most)
            + "\n"
            + options([(str(n), str(n)) for n in range(1, most + 1)])
        )
    item = await meals.item(item_id)
    if item is None or day is None:
        conv.finish()
        return Text(_("That item is no longer on the menu. Please send meal to start again."))
    eligibility = await meals.eligibility(user.person_id, day)
    where = (
        _("Delivered to your building.")
        if eligibility.delivery
        else _("Pick up at {canteen}.", canteen=item.canteen_name)
    )
    conv.goto(CONFIRM, quantity=quantity)
    return Text(
        _(
            "{meal}: {item} × {quantity}, {total} in all.",
            meal=meal_label(item.day, slot, meals.today(), user.locale, _),
            item=item.name,
            quantity=quantity,
            total=money(quantity * item.price_cents),
        )
        + "\n"
        + where
        + "\n"
        + options(
            [(_("Confirm the order"), _("confirm")), (_("Cancel"), kw.CANCEL.text(user.locale))]
        )
    )


async def got_confirm(
    text: str, conv: Conversation, user: Principal, meals: MealService, _: Translate
) -> Message:
    answer = text.strip().casefold()
    if answer in NO_WORDS:
        conv.finish()
        return Text(_("Cancelled. Send help to see what you can do."))
    if answer not in CONFIRM_WORDS and answer != _("confirm").casefold():
        return Text(
            _("Please confirm the order, or cancel it.")
            + "\n"
            + options(
                [(_("Confirm the order"), _("confirm")), (_("Cancel"), kw.CANCEL.text(user.locale))]
            )
        )
    item_id, quantity = conv.data.get("item"), conv.data.get("quantity")
    day, slot = _iso(str(conv.data.get("day", ""))), str(conv.data.get("slot", ""))
    conv.finish()
    if (
        user.person_id is None
        or not isinstance(item_id, int)
        or not isinstance(quantity, int)
        or day is None
        or slot not in SLOTS
    ):
        return Text(_("The order was interrupted. Please send meal to start again."))
    placed = await meals.place(user.person_id, item_id, quantity)
    today = meals.today()
    meal = meal_label(day, slot, today, user.locale, _)
    match placed.outcome:
        case Outcome.PLACED:
            order = placed.order
            assert order is not None
            if not order.delivery:
                where = _("Pick it up at {canteen}.", canteen=order.canteen_name)
            elif order.building_name:
                where = _("It will be delivered to {building}.", building=order.building_name)
            else:
                where = _(
                    "It will be delivered, but we have no home building of yours on record: "
                    "please tell the canteen where to bring it."
                )
            return Text(
                _(
                    "Ordered: {meal}, {item} × {quantity}, {total} (order no. {id}).",
                    meal=meal,
                    item=order.item_name,
                    quantity=order.quantity,
                    total=money(order.total_cents),
                    id=order.id,
                )
                + "\n"
                + where
                + "\n"
                + _(
                    "You can cancel it until {time}.",
                    time=clock_time(order.deadline, meals.tz, today, user.locale, _),
                )
                + "\n"
                + option(_("My orders"), kw.MY_ORDERS.text(user.locale), 1)
            )
        case Outcome.SOLD_OUT:
            if placed.left <= 0:
                return Text(_("Sorry, that item has just sold out. Send meal to choose another."))
            return Text(
                _(
                    "Sorry, only {count} portions are left now. Send meal to order again.",
                    count=placed.left,
                )
            )
        case Outcome.LIMIT:
            return Text(
                _(
                    "One person may order at most {limit} portions per meal; "
                    "you may order {count} more for {meal}.",
                    limit=meals.rules.per_person_limit,
                    count=placed.left,
                    meal=meal,
                )
            )
        case Outcome.CLOSED:
            return Text(_("Orders for {meal} are closed.", meal=meal))
        case Outcome.NOT_YET:
            return Text(_("Orders for {meal} are not open yet.", meal=meal))
        case Outcome.NOT_BACK:
            return _refused(Refusal.NOT_BACK, _)
        case Outcome.NOT_ACTIVE:
            return _refused(Refusal.NOT_ACTIVE, _)
        case Outcome.UNKNOWN_ITEM:
            return Text(_("That item is no longer on the menu. Please send meal to start again."))
        case Outcome.BAD_QUANTITY:  # the quantity step allows 1…limit: a conversation gone stale
            return Text(_("The order was interrupted. Please send meal to start again."))


async def my_orders(user: Principal, meals: MealService, _: Translate) -> Message:
    if user.person_id is None:
        return _bind_first(_)
    orders = await meals.orders(user.person_id)
    if not orders:
        return Text(
            _("You have no meal orders from today on.")
            + "\n"
            + option(_("Order a meal"), kw.MEAL.text(user.locale), 1)
        )
    today = meals.today()
    word = kw.CANCEL_ORDER.text(user.locale)
    lines = [_("Your meal orders:")]
    menu_id = 0
    for order in orders:
        where = (
            _("delivery to {building}", building=order.building_name)
            if order.delivery and order.building_name
            else _("delivery")
            if order.delivery
            else _("pick-up at {canteen}", canteen=order.canteen_name)
        )
        lines.append(
            _(
                "No. {id} {meal}: {item} × {quantity}, {total}, {where}",
                id=order.id,
                meal=meal_label(order.day, order.slot, today, user.locale, _),
                item=order.item_name,
                quantity=order.quantity,
                total=money(order.total_cents),
                where=where,
            )
        )
        if order.open:
            menu_id += 1
            lines.append(
                option(_("Cancel order no. {id}", id=order.id), f"{word} {order.id}", menu_id)
            )
        else:
            lines.append(_("(orders for this meal are closed)"))
    return Text(fit(lines, _, more=_more(_)))


async def cancel_order(args: str, user: Principal, meals: MealService, _: Translate) -> Message:
    if user.person_id is None:
        return _bind_first(_)
    order_id = _number(args.strip().lstrip("#＃"), 18)
    if order_id is None:
        return Text(
            _(
                "Send {command} <order no.>; my orders lists them.",
                command=kw.CANCEL_ORDER.text(user.locale),
            )
        )
    match await meals.cancel(user.person_id, order_id):
        case Cancel.CANCELLED:
            return Text(_("Order no. {id} is cancelled.", id=order_id))
        case Cancel.ALREADY:
            return Text(_("Order no. {id} was cancelled already.", id=order_id))
        case Cancel.CLOSED:
            return Text(
                _(
                    "Orders for that meal are closed, so order no. {id} can no longer be "
                    "cancelled.",
                    id=order_id,
                )
            )
        case Cancel.NOT_FOUND:
            return Text(_("You have no order no. {id}.", id=order_id))


async def canteen_orders(args: str, user: Principal, meals: MealService, _: Translate) -> Message:
    if not user.bound or not user.has_role("canteen") or user.state != "active":
        return Text(_("Only canteen staff can see the meal orders."))
    today = meals.today()
    word = kw.ORDERS.text(user.locale)
    value = args.strip().casefold()
    if not value or value in TODAY_WORDS:
        day: date | None = today
    elif value in TOMORROW_WORDS:
        day = today + timedelta(days=1)
    else:
        day = _iso(value)
    if day is None:
        return Text(_("Send {command}, {command} tomorrow, or {command} YYYY-MM-DD.", command=word))
    counts = await meals.counts(day)
    others = [
        (_("Today"), f"{word} {today.isoformat()}"),
        (_("Tomorrow"), f"{word} {(today + timedelta(days=1)).isoformat()}"),
    ]
    more = options(others)
    if not counts:
        return Text(_("There is no menu for {date}.", date=day.isoformat()) + "\n" + more)
    lines = [_("Meal orders for {date}:", date=day.isoformat())]
    lines += render_counts(counts, today, user.locale, _)
    return Text(fit(lines, _, tail=more))


def _iso(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None
