"""Statuses, reasons and reports in plain words, in the reader's language."""

from __future__ import annotations

import functools
from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton

from bot.i18n import N_, Translate
from campus.health.model import Reason, Report, Status
from campus.health.rules import HealthRules

COLOURS = {Status.GREEN: N_("Green"), Status.YELLOW: N_("Yellow"), Status.RED: N_("Red")}
DOTS = {Status.GREEN: "🟢", Status.YELLOW: "🟡", Status.RED: "🔴"}

SYMPTOM_NAMES = {
    "fever": N_("fever"),
    "cough": N_("cough"),
    "sore_throat": N_("sore throat"),
    "fatigue": N_("fatigue"),
    "taste_smell": N_("loss of taste or smell"),
    "diarrhoea": N_("diarrhoea"),
    "other": N_("other symptoms"),
}
LOCATION_NAMES = {
    "campus": N_("on campus"),
    "city": N_("in the city"),
    "elsewhere": N_("elsewhere"),
}
_REASONS: dict[str, str] = {
    "fever": N_("temperature {temperature} °C on {date}"),
    "fever_with_symptom": N_("temperature {temperature} °C with {symptoms} on {date}"),
    "symptoms": N_("symptoms on {date}: {symptoms}"),
    "contact": N_("contact with a confirmed case, reported on {date}"),
    "travel": N_("came from a risk area, reported on {date}"),
    "missed_reports": N_("no health report for {days} days from {date}"),
    "override": N_("set by a health officer on {date}: {note}"),
}
_TRAVEL_FROM = N_("came from a risk area ({region}), reported on {date}")


def colour(status: Status, _: Translate) -> str:
    """绿码 / Green, with its dot."""
    return f"{DOTS[status]} {_(COLOURS[status])}"


def colour_name(status: Status, _: Translate) -> str:
    return _(COLOURS[status])


@functools.lru_cache(maxsize=256)  # a few days in two languages; babel's formatting is slow
def short_date(day: date, locale: str) -> str:
    return format_skeleton("MMMd", day, locale=_babel(locale))


def short_time(at: datetime, tz: ZoneInfo, locale: str) -> str:
    local = at.astimezone(tz)
    return f"{short_date(local.date(), locale)} {local:%H:%M}"


def degrees(tenths: int | None) -> str:
    return "?" if tenths is None else f"{tenths / 10:.1f}"


def symptom_list(codes: tuple[str, ...] | frozenset[str], _: Translate, locale: str) -> str:
    sep = "、" if locale == "zh_CN" else ", "
    return sep.join(_(SYMPTOM_NAMES.get(c, "other symptoms")) for c in sorted(codes))


def reason_text(reason: Reason, rules: HealthRules, _: Translate, locale: str) -> str:
    params = {
        "date": short_date(reason.day, locale),
        "temperature": degrees(reason.temperature),
        "symptoms": symptom_list(reason.symptoms, _, locale) if reason.symptoms else "",
        "region": reason.region,
        "days": str(reason.days),
    }
    rule = rules.rule(reason.rule)
    if rule is not None and rule.texts:
        try:
            return rule.texts.get(locale, rule.texts["en"]).format(**params)
        except (KeyError, IndexError):  # pragma: no cover (placeholders are checked at load)
            return reason.rule
    if reason.code == "travel" and reason.region:
        return _(_TRAVEL_FROM, **params)
    message = _REASONS.get(reason.code)
    if reason.code == "override":
        params["note"] = reason.note
    if message is None:
        return reason.rule  # a rule removed from the file since: its name is all there is
    return _(message, **params)


def reason_lines(reasons: tuple[Reason, ...], rules: HealthRules, _: Translate, locale: str) -> str:
    return "\n".join(f"• {reason_text(r, rules, _, locale)}" for r in reasons)


def report_summary(report: Report, _: Translate, locale: str) -> str:
    """36.5 °C, no symptoms, on campus."""
    parts = [f"{degrees(report.temperature)} °C"]
    parts.append(symptom_list(report.symptoms, _, locale) if report.symptoms else _("no symptoms"))
    where = _(LOCATION_NAMES.get(report.location, "elsewhere"))
    if report.location == "elsewhere" and report.region:
        where = f"{where}（{report.region}）" if locale == "zh_CN" else f"{where} ({report.region})"
    parts.append(where)
    if report.contact:
        parts.append(_("contact with a case"))
    if report.travel:
        parts.append(_("came from a risk area"))
    sep = "，" if locale == "zh_CN" else ", "
    return sep.join(parts)


def space(locale: str) -> str:
    """Between two sentences or a sentence and a remark: none in Chinese."""
    return "" if locale == "zh_CN" else " "


def _babel(locale: str) -> str:
    return "zh_Hans_CN" if locale == "zh_CN" else "en"
