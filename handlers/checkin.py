"""Daily check-in: `打卡 36.5` in one message, "same as yesterday" in one tap, or step by step.

Steps: temperature → symptoms (tap each, then done) → where you are (→ region when
elsewhere) → contact / risk-area travel → recorded. See checkin.mmd.
"""

from __future__ import annotations

import functools
import re

from bot.dispatch.state import Conversation
from bot.i18n import LOCALES, N_, Translate, translator
from bot.replies import Message, Text, options
from campus.accounts import Principal
from campus.health import explain
from campus.health.answers import NONE_WORDS, BadAnswer, normalise, parse_region, parse_symptoms
from campus.health.answers import parse_temperature as read_temperature
from campus.health.checkin import CheckinResult, CheckinService, Draft, Outcome
from campus.health.model import SYMPTOMS
from handlers import keywords as kw
from handlers.status import details

TEMPERATURE = "checkin.temperature"
SYMPTOMS_STEP = "checkin.symptoms"
LOCATION = "checkin.location"
REGION = "checkin.region"
EXPOSURE = "checkin.exposure"

SAME = N_("same as yesterday")
DONE = N_("done")
NONE = N_("none")
EXPOSURES = {
    "neither": N_("neither"),
    "contact": N_("contact with a case"),
    "travel": N_("came from a risk area"),
    "both": N_("both"),
}
_EXPOSURE_FLAGS = {
    "neither": (False, False),
    "contact": (True, False),
    "travel": (False, True),
    "both": (True, True),
}
_EXTRA_WORDS = {
    "same": "same",
    "同上": "same",
    "和昨天一样": "same",
    "同昨日": "same",
    "no": "neither",
    "否": "neither",
    "没有": "neither",
    "无": "neither",
    "campus": "campus",
    "city": "city",
    "elsewhere": "elsewhere",
    "在校": "campus",
    "本市": "city",
    "外地": "elsewhere",
}
_UNSAFE = re.compile(r"[<>&\"'\]\[\n\r]")


@functools.cache  # the catalogs do not change while running
def _words(message: str) -> frozenset[str]:
    return frozenset(
        {normalise(translator(locale)(message)) for locale in LOCALES} | {normalise(message)}
    )


def _is(text: str, message: str, extra: str = "") -> bool:
    value = normalise(text)
    return value in _words(message) or (bool(extra) and _EXTRA_WORDS.get(value) == extra)


def _shown(text: str) -> str:
    """A user's answer, quoted back safely."""
    return _UNSAFE.sub("", text.strip())[:12]


async def start(
    args: str, conv: Conversation, user: Principal, checkins: CheckinService, _: Translate
) -> Message:
    """打卡 / checkin / menu CHECKIN: the quick forms, or the first question."""
    if not user.bound:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    assert user.person_id is not None
    args = args.strip()
    if args:
        if _is(args, SAME, "same"):
            conv.finish()
            return _result(await checkins.same_as_yesterday(user.person_id), user, checkins, _)
        first, _sep, rest = args.partition(" ")
        try:
            temperature = read_temperature(first)
            symptoms = parse_symptoms(rest) if rest.strip() else frozenset()
        except BadAnswer as exc:
            return Text(_bad_answer(exc, _) + "\n" + _quick_usage(user, _))
        conv.finish()
        draft = Draft(temperature, symptoms, source="quick")
        return _result(await checkins.submit(user.person_id, draft), user, checkins, _)
    today = await checkins.today(user.person_id)
    lines = [_("Daily health report.")]
    if today.today is not None:
        lines.append(
            _(
                "You have already reported today ({report}); a new report replaces it.",
                report=explain.report_summary(today.today, _, user.locale),
            )
        )
    lines.append(_("What is your temperature today (°C)? Send the number, like 36.5."))
    choices = []
    if today.yesterday is not None:
        lines.append(
            _(
                "Or repeat yesterday's report: {report}",
                report=explain.report_summary(today.yesterday, _, user.locale),
            )
        )
        choices.append((_("Same as yesterday"), _(SAME)))
    choices.append((_("Cancel"), kw.CANCEL.text(user.locale)))
    conv.goto(TEMPERATURE)
    return Text("\n".join(lines) + "\n" + options(choices))


async def got_temperature(
    text: str, conv: Conversation, user: Principal, checkins: CheckinService, _: Translate
) -> Message:
    if user.person_id is None:
        conv.finish()
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    if _is(text, SAME, "same"):
        conv.finish()
        return _result(await checkins.same_as_yesterday(user.person_id), user, checkins, _)
    try:
        temperature = read_temperature(text)
    except BadAnswer as exc:
        return Text(_bad_answer(exc, _))
    conv.goto(SYMPTOMS_STEP, temperature=temperature, symptoms=[])
    return Text(_symptoms_question(frozenset(), user.locale, _))


def _symptoms_question(chosen: frozenset[str], locale: str, _: Translate) -> str:
    if chosen:
        picked = explain.symptom_list(chosen, _, locale)
        head = _(
            "Symptoms so far: {symptoms}. Tap more, tap one again to remove it, or Done.",
            symptoms=picked,
        )
    else:
        head = _("Any symptoms? Tap each one you have, then Done. Tap None if you feel well.")
    choices = [] if chosen else [(_("None"), _(NONE))]
    for code in SYMPTOMS:
        name = _(explain.SYMPTOM_NAMES[code])
        choices.append((("✓ " if code in chosen else "") + name, name))
    choices.append((_("Done"), _(DONE)))
    return head + "\n" + options(choices)


async def got_symptoms(text: str, conv: Conversation, user: Principal, _: Translate) -> Message:
    chosen = frozenset(str(s) for s in conv.data.get("symptoms", []) if s in SYMPTOMS)
    value = normalise(text)
    if _is(text, DONE) or _is(text, NONE) or value in NONE_WORDS:
        if not _is(text, DONE):
            chosen = frozenset()
        conv.goto(LOCATION, symptoms=sorted(chosen))
        return Text(_location_question(_))
    try:
        named = parse_symptoms(text)
    except BadAnswer:
        return Text(
            _("Please tap the symptoms from the list, then Done.")
            + "\n"
            + _symptoms_question(chosen, user.locale, _)
        )
    chosen = chosen ^ named  # tapping a chosen symptom again takes it back
    conv.goto(SYMPTOMS_STEP, symptoms=sorted(chosen))
    return Text(_symptoms_question(chosen, user.locale, _))


def _location_question(_: Translate) -> str:
    return (
        _("Where are you today?")
        + "\n"
        + options([(_(name), _(name)) for name in explain.LOCATION_NAMES.values()])
    )


def _location(text: str) -> str | None:
    value = normalise(text)
    for code, message in explain.LOCATION_NAMES.items():
        if value in _words(message):
            return code
    return _EXTRA_WORDS.get(value) if _EXTRA_WORDS.get(value) in explain.LOCATION_NAMES else None


async def got_location(text: str, conv: Conversation, _: Translate) -> Message:
    location = _location(text)
    if location is None:
        return Text(_("Please tap one of the places.") + "\n" + _location_question(_))
    if location == "elsewhere":
        conv.goto(REGION, location=location)
        return Text(_("Which city or region are you in? Send its name, like Wuhan."))
    conv.goto(EXPOSURE, location=location, region="")
    return Text(_exposure_question(_))


async def got_region(text: str, conv: Conversation, _: Translate) -> Message:
    try:
        region = parse_region(text)
    except BadAnswer:
        return Text(_("Please send the name of the city or region (up to 50 characters)."))
    conv.goto(EXPOSURE, region=region)
    return Text(_exposure_question(_))


def _exposure_question(_: Translate) -> str:
    return (
        _(
            "In the last 14 days, have you had contact with a confirmed case, "
            "or come from a risk area?"
        )
        + "\n"
        + options([(_(message), _(message)) for message in EXPOSURES.values()])
    )


async def got_exposure(
    text: str, conv: Conversation, user: Principal, checkins: CheckinService, _: Translate
) -> Message:
    answer = next((key for key, msg in EXPOSURES.items() if _is(text, msg, key)), None)
    if answer is None:
        return Text(_("Please tap one of the answers.") + "\n" + _exposure_question(_))
    contact, travel = _EXPOSURE_FLAGS[answer]
    data = conv.data
    conv.finish()
    if user.person_id is None:
        return Text(_("First bind your campus record: send bind <person no.> <last 6 of ID>."))
    try:
        draft = Draft(
            temperature=int(data["temperature"]),
            symptoms=frozenset(str(s) for s in data.get("symptoms", [])),
            location=str(data.get("location", "campus")),
            region=str(data.get("region", "")),
            contact=contact,
            travel=travel,
            source="form",
        )
    except (KeyError, TypeError, ValueError):
        return Text(_("Sorry, that report got mixed up. Please start again: send checkin."))
    return _result(await checkins.submit(user.person_id, draft), user, checkins, _)


def _result(
    result: CheckinResult, user: Principal, checkins: CheckinService, _: Translate
) -> Message:
    match result.outcome:
        case Outcome.NOTHING_YESTERDAY:
            return Text(
                _("There is no report from yesterday to repeat. Send your temperature, like 36.5.")
            )
        case Outcome.INACTIVE | Outcome.UNKNOWN_PERSON:
            return Text(_("This record is no longer active. Please contact your unit."))
    assert result.report is not None and result.standing is not None
    locale = user.locale
    head = _(
        "Report for {date} recorded: {report}.",
        date=explain.short_date(result.report.day, locale),
        report=explain.report_summary(result.report, _, locale),
    )
    if result.replaced:
        head += explain.space(locale) + _("It replaces your earlier report of today.")
    lines = [head, _("Your status: {colour}", colour=explain.colour(result.standing.status, _))]
    if result.standing.status is not result.before:
        was = _("(was {colour})", colour=explain.colour_name(result.before, _))
        lines[-1] += explain.space(locale) + was
    lines += details(result.standing, result.forecast, checkins.rules, _, locale)
    return Text("\n".join(lines) + "\n" + options([(_("My status"), kw.STATUS.text(user.locale))]))


def _bad_answer(exc: BadAnswer, _: Translate) -> str:
    if exc.kind == "out_of_range":
        return _(
            "{value} is outside 34.0–43.0 °C. Please measure again and send the number, like 36.5.",
            value=_shown(exc.value),
        )
    return _(
        'I could not read "{value}" as a temperature. Send the number, like 36.5.',
        value=_shown(exc.value),
    )


def _quick_usage(user: Principal, _: Translate) -> str:
    return _("Quick check-in: {example}", example=f"{kw.CHECKIN.text(user.locale)} 36.5")
