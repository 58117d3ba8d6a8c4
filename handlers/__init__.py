"""Conversations, one module each; the router order is written here and only here.

Order: commands that work in the middle of any conversation (cancel, help, language) →
the steps of multi-step conversations → entry points (keywords, menu keys, events) →
the fallback (short help; only outside a conversation).
"""

from __future__ import annotations

from bot.dispatch.router import Router
from bot.i18n import N_
from handlers import (
    bind,
    checkin,
    dashboard,
    guard,
    help,
    meals,
    my_unit,
    notify,
    passcode,
    place,
    receipts,
    register,
    returns,
    status,
    tracing,
)
from handlers import keywords as kw
from handlers.commands import Command

COMMANDS: tuple[Command, ...] = (
    Command(kw.BIND, N_("bind your campus record"), N_("<person no.> <ID last 6>"), bound=False),
    Command(kw.REGISTER, N_("register as a temporary person (with a host)"), bound=False),
    Command(
        kw.APPROVE_REG,
        N_("approve a registration you host"),
        N_("<registration no.>"),
        bound=True,
        roles=frozenset({"responsible"}),
    ),
    Command(
        kw.REJECT_REG,
        N_("reject a registration you host"),
        N_("<registration no.>"),
        bound=True,
        roles=frozenset({"responsible"}),
    ),
    Command(kw.CHECKIN, N_("today's health report (or: checkin 36.5)"), bound=True),
    Command(kw.STATUS, N_("your health status, why, and the days to green"), bound=True),
    Command(kw.CODE, N_("show your pass code"), bound=True),
    Command(kw.UNBIND, N_("release this WeChat account's binding"), bound=True),
    Command(
        kw.NOTIFY,
        N_("send a notice to everyone in a unit you are responsible for"),
        N_("<unit code> <text>"),
        bound=True,
        roles=frozenset({"responsible"}),
    ),
    Command(
        kw.MY_UNIT,
        N_("your units: people by category, bound, registrations waiting"),
        bound=True,
        roles=frozenset({"responsible"}),
    ),
    Command(kw.EXIT, N_("record your next scan as an exit"), bound=True),
    Command(
        kw.ON_DUTY,
        N_("go on duty at a gate or door"),
        N_("<place code>"),
        bound=True,
        roles=frozenset({"guard"}),
    ),
    Command(kw.OFF_DUTY, N_("go off duty"), bound=True, roles=frozenset({"guard"})),
    Command(
        kw.ACK,
        N_("acknowledge the health warnings sent to you"),
        bound=True,
        roles=frozenset({"responsible", "health_officer"}),
    ),
    Command(
        kw.SET_STATUS,
        N_("set a person's health status"),
        N_("<person no.> <green|yellow|red> <reason>"),
        bound=True,
        roles=frozenset({"health_officer"}),
    ),
    Command(
        kw.TRACE,
        N_("who shared a place with a person (contact tracing)"),
        N_("<person no.> [days]"),
        bound=True,
        roles=frozenset({"health_officer"}),
    ),
    Command(
        kw.INCIDENT,
        N_("open an incident (red, trace, close contacts); send it alone for more"),
        N_("<person no.> <note>"),
        bound=True,
        roles=frozenset({"health_officer"}),
    ),
    Command(
        kw.DASHBOARD,
        N_("a link to the dashboard of your units (valid 15 minutes)"),
        bound=True,
        roles=frozenset({"responsible", "health_officer", "admin"}),
    ),
    meals.MealCommand(kw.MEAL, N_("order a meal (back on campus, or staff)"), bound=True),
    meals.MealCommand(kw.MY_ORDERS, N_("your meal orders, to see or cancel"), bound=True),
    Command(
        kw.ORDERS,
        N_("meal orders per slot, item and building"),
        N_("[tomorrow | YYYY-MM-DD]"),
        bound=True,
        roles=frozenset({"canteen"}),
    ),
    Command(kw.RETURN, N_("apply to return to campus; see, change or withdraw it"), bound=True),
    Command(
        kw.PENDING,
        N_("return applications waiting for your approval"),
        bound=True,
        roles=frozenset({"responsible"}),
    ),
    Command(
        kw.APPROVE_RETURN,
        N_("approve a return application"),
        N_("A<application no.>"),
        bound=True,
        roles=frozenset({"responsible"}),
    ),
    Command(
        kw.REJECT_RETURN,
        N_("reject a return application, with the reason"),
        N_("A<application no.> <reason>"),
        bound=True,
        roles=frozenset({"responsible"}),
    ),
    Command(kw.HELP, N_("list what you can send")),
    Command(kw.CANCEL, N_("stop the current step")),
)


def build_router() -> Router:
    r = Router()
    # 0. WeChat's reports on our pushes (not the user's doing; see Dispatcher.handle).
    r.add(receipts.template_finished, events=["templatesendjobfinish"])
    # 1. Anywhere, even mid-conversation.
    r.add(help.cancel, keywords=kw.CANCEL.words)
    r.add(help.show_help, keywords=kw.HELP.words, menu_keys=[kw.MENU_HELP])
    r.add(help.switch_language, keywords=[kw.ENGLISH, kw.CHINESE])
    r.add(status.acknowledge, keywords=kw.ACK.words)  # a warning's tap, whatever the step
    r.add(meals.cancel_order, keywords=kw.CANCEL_ORDER.words)  # a tap in my orders, likewise
    # 2. Conversation steps.
    r.add(bind.got_person_no, state=bind.PERSON_NO)
    r.add(bind.got_id_tail, state=bind.ID_TAIL)
    r.add(bind.confirm_unbind, state=bind.CONFIRM_UNBIND)
    r.add(register.got_name, state=register.NAME)
    r.add(register.got_id_number, state=register.ID_NUMBER)
    r.add(register.got_phone, state=register.PHONE)
    r.add(register.got_category, state=register.CATEGORY)
    r.add(register.got_host, state=register.HOST)
    r.add(register.got_place, state=register.PLACE)
    r.add(register.got_days, state=register.DAYS)
    r.add(checkin.got_temperature, state=checkin.TEMPERATURE)
    r.add(checkin.got_symptoms, state=checkin.SYMPTOMS_STEP)
    r.add(checkin.got_location, state=checkin.LOCATION)
    r.add(checkin.got_region, state=checkin.REGION)
    r.add(checkin.got_exposure, state=checkin.EXPOSURE)
    r.add(meals.got_slot, state=meals.SLOT)
    r.add(meals.got_canteen, state=meals.CANTEEN)
    r.add(meals.got_item, state=meals.ITEM)
    r.add(meals.got_quantity, state=meals.QUANTITY)
    r.add(meals.got_confirm, state=meals.CONFIRM)
    r.add(returns.got_batch, state=returns.BATCH)
    r.add(returns.got_date, state=returns.DATE)
    r.add(returns.got_transport, state=returns.TRANSPORT)
    r.add(returns.got_number, state=returns.NUMBER)
    r.add(returns.got_region, state=returns.REGION)
    r.add(returns.got_confirm, state=returns.CONFIRM)
    r.add(returns.got_reject_reason, state=returns.REJECT_REASON)
    # 3. Entry points.
    r.add(bind.start, keywords=kw.BIND.words)
    r.add(bind.start_unbind, keywords=kw.UNBIND.words)
    r.add(register.start, keywords=kw.REGISTER.words)
    # Before the registration's: `approve A12` is an application, `approve 12` is handed on.
    r.add(returns.approve, keywords=kw.APPROVE_RETURN.words)
    r.add(returns.reject, keywords=kw.REJECT_RETURN.words)
    r.add(returns.pending, keywords=kw.PENDING.words)
    r.add(returns.start, keywords=kw.RETURN.words, menu_keys=[kw.MENU_RETURN])
    r.add(register.approve, keywords=kw.APPROVE_REG.words)
    r.add(register.reject, keywords=kw.REJECT_REG.words)
    r.add(checkin.start, keywords=kw.CHECKIN.words, menu_keys=[kw.MENU_CHECKIN])
    r.add(status.show_status, keywords=kw.STATUS.words, menu_keys=[kw.MENU_MY_STATUS])
    r.add(status.set_status, keywords=kw.SET_STATUS.words)
    r.add(tracing.trace, keywords=kw.TRACE.words)
    r.add(tracing.incident, keywords=kw.INCIDENT.words)
    r.add(notify.notify, keywords=kw.NOTIFY.words)
    r.add(my_unit.my_unit, keywords=[*kw.MY_UNIT.words, "my unit"])
    r.add(dashboard.dashboard_link, keywords=kw.DASHBOARD.words)
    r.add(meals.start, keywords=kw.MEAL.words, menu_keys=[kw.MENU_MEALS])
    r.add(meals.my_orders, keywords=[*kw.MY_ORDERS.words, "my orders"])
    r.add(meals.canteen_orders, keywords=kw.ORDERS.words)
    r.add(passcode.show_code, keywords=kw.CODE.words, menu_keys=[kw.MENU_MY_CODE])
    r.add(guard.verify, menu_keys=[kw.MENU_VERIFY])
    r.add(guard.on_duty, keywords=kw.ON_DUTY.words)
    r.add(guard.off_duty, keywords=kw.OFF_DUTY.words)
    r.add(guard.mark_exit, keywords=kw.EXIT.words)
    # A place poster (SCAN, or subscribe with qrscene_place:…) is a self check-in; any other
    # follow is handed to help.welcome.
    r.add(place.scanned, events=["scan", "subscribe"])
    r.add(help.goodbye, events=["unsubscribe"])
    # 4. Anything else.
    r.add(help.fallback, fallback=True)
    return r
