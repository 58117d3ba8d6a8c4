"""`/dashboard?t=…`: the dashboard page, server-rendered HTML for WeChat's browser and a desktop.

One self-contained page: inline CSS and SVG charts, no script, nothing fetched from elsewhere
(the Content-Security-Policy says so). The link's token is the only credential; the page keeps
it in its own links (drill-down, language) and tells the browser not to cache the page or
send it on as a referrer. A bad link gets a short page in the reader's language with a 4xx.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from html import escape

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot import appkeys as K
from bot.i18n import LOCALES, N_, Translate, translator
from campus.dashboard.figures import DIRECT, STATUSES, Dashboard, UnitFigures
from campus.dashboard.service import DashboardRefused, DashboardService, Refusal, View
from campus.links import BadLink
from handlers import keywords as kw

log = logging.getLogger(__name__)

STATUS_NAMES = {"green": N_("Green"), "yellow": N_("Yellow"), "red": N_("Red")}
STATUS_COLOURS = {"green": "#1a9850", "yellow": "#e6a100", "red": "#d73027"}
CAUSE_NAMES = {
    "fever": N_("fever"),
    "fever_with_symptom": N_("fever with a symptom"),
    "symptoms": N_("symptoms"),
    "contact": N_("contact with a case"),
    "travel": N_("came from a risk area"),
    "missed_reports": N_("missed reports"),
    "override": N_("set by a health officer"),
}
SLOT_NAMES = {"breakfast": N_("breakfast"), "lunch": N_("lunch"), "dinner": N_("dinner")}
PHASE_NAMES = {"upcoming": N_("upcoming"), "open": N_("open"), "closed": N_("closed")}
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
}

CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 -apple-system,"PingFang SC","Microsoft YaHei",sans-serif;
color:#1f2933;background:#f3f5f7}
header{background:#0b6e4f;color:#fff;padding:12px 16px}
header h1{margin:0;font-size:19px}
header a{color:#fff}
.meta{font-size:12px;opacity:.85;margin-top:2px}
.crumbs{font-size:14px;margin-top:6px}
.lang{float:right;font-size:13px;border:1px solid #fff8;border-radius:12px;padding:1px 9px;
text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:10px}
section{background:#fff;border-radius:8px;padding:12px 14px;margin:10px 0;
box-shadow:0 1px 2px #0001}
h2{font-size:16px;margin:0 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;
background:none;box-shadow:none;padding:0}
.card{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px #0001}
.card .label{font-size:12px;color:#52606d}
.card .value{font-size:24px;font-weight:600}
.card .sub{font-size:12px;color:#52606d}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 6px;border-bottom:1px solid #e4e7eb;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left;white-space:normal;min-width:110px}
th{font-size:12px;color:#52606d;font-weight:500}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;min-width:90px;background:#e4e7eb}
.muted{color:#7b8794;font-size:13px}
.heat td{padding:4px 3px;font-size:12px;min-width:24px;text-align:center}
.heat td:first-child{text-align:left}
.two{display:grid;grid-template-columns:minmax(0,1fr);gap:0 10px}
@media (min-width:900px){.two{grid-template-columns:minmax(0,1fr) minmax(0,1fr)}}
svg text{font-family:inherit}
.chart{display:block;max-height:240px;margin:0 auto}
"""


async def dashboard_page(request: web.Request) -> web.Response:
    query = request.rel_url.query
    asked = query.get("lang")
    token = query.get("t", "")
    locale = (
        asked
        if asked in LOCALES
        else _locale_hint(token, request.headers.get("Accept-Language", ""))
        or request.app[K.SETTINGS].default_locale
    )
    service: DashboardService = request.app[K.SERVICES]["dashboard"]
    if not token:
        return _refusal(400, locale, N_("This link is incomplete."))
    try:
        link = service.verify(token)
    except BadLink as exc:
        if exc.reason == "expired":
            return _refusal(403, locale, N_("This link has expired."))
        if exc.reason == "malformed":
            return _refusal(400, locale, N_("This link is incomplete."))
        return _refusal(403, locale, N_("This link is not valid."))
    if asked not in LOCALES:
        locale = str(link.claims["l"])
    try:
        view = await service.open(token, query.get("u") or None)
    except BadLink:  # expired in between: as good as expired before
        return _refusal(403, locale, N_("This link has expired."))
    except DashboardRefused as exc:
        if exc.reason is Refusal.UNKNOWN_UNIT:
            return _refusal(404, locale, N_("There is no such unit among yours."), again=False)
        return _refusal(403, locale, N_("You may no longer open the dashboard."), again=False)
    except (SQLAlchemyError, OSError):
        log.exception("dashboard: the database failed")
        return _refusal(503, locale, N_("The dashboard is unavailable just now."), again=False)
    html = render(view, service, locale)
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=HEADERS)


def _locale_hint(token: str, accept_language: str) -> str | None:
    """The language for a refusal: the link's own (read unverified: it only picks one of the
    two languages), else the browser's (WeChat's browser sends the user's WeChat language)."""
    body = token.partition(".")[0]
    if 0 < len(body) <= 2048:
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["c"]
            if claims.get("l") in LOCALES:
                return str(claims["l"])
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return None


def _refusal(status: int, locale: str, message: str, *, again: bool = True) -> web.Response:
    _ = translator(locale)
    body = _tag("p", _(message), 'class="refusal"')
    if again:
        body += (
            "<p>"
            + escape(
                _(
                    "Send {command} in the chat for a new link.",
                    command=kw.DASHBOARD.text(locale),
                )
            )
            + "</p>"
        )
    html = _page(locale, _("Dashboard"), "", f"<main><section>{body}</section></main>")
    return web.Response(
        status=status, text=html, content_type="text/html", charset="utf-8", headers=HEADERS
    )


def _page(locale: str, title: str, header: str, body: str) -> str:
    lang = "zh-CN" if locale == "zh_CN" else "en"
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"{header}{body}</body></html>"
    )


def _tag(name: str, text: str, attrs: str = "") -> str:
    """`<name attrs>text</name>`, the text escaped."""
    return f"<{name}{' ' + attrs if attrs else ''}>{escape(text)}</{name}>"


def _empty(ident: str, title: str, message: str) -> str:
    return f'<section id="{ident}">{title}<p class="muted">{escape(message)}</p></section>'


def _name(names: dict[str, str], key: str, _: Translate) -> str:
    return _(names[key]) if key in names else key


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def render(view: View, service: DashboardService, locale: str) -> str:
    _ = translator(locale)
    d = view.dashboard

    def link(unit: str | None = None, lang: str = locale) -> str:
        return escape(service.query(view.token, unit, lang))

    other = "en" if locale == "zh_CN" else "zh_CN"
    now = service.local(service.now())
    crumbs: list[str] = []
    if len(view.tops) > 1:
        top_name = _("All units") if view.campus_wide else _("Your units")
        crumbs.append(f'<a href="{link()}">{escape(top_name)}</a>' if d.path else escape(top_name))
    for i, (code, name) in enumerate(d.path):
        last = i == len(d.path) - 1
        crumbs.append(escape(name) if last else f'<a href="{link(code)}">{escape(name)}</a>')
    header = (
        "<header>"
        f'<a class="lang" href="{link(view.focus_code, other)}">'
        f"{'English' if other == 'en' else '中文'}</a>"
        + _tag("h1", _("Healthy Campus dashboard"))
        + f'<div class="crumbs" id="crumbs">{" › ".join(crumbs)}</div>'
        + '<div class="meta">'
        + escape(
            _(
                "{day}, as of {time}; this link is valid until {until}.",
                day=d.today.isoformat(),
                time=f"{now:%H:%M}",
                until=f"{service.local(view.expires_at):%H:%M}",
            )
        )
        + "</div></header>"
    )
    parts = [
        _cards(d, _),
        _trend(d, _),
        _units(d, _, link),
        '<div class="two">' + _warnings(d, _) + _returns(d, _) + "</div>",
        _gates(d, _),
        _meals(d, _),
    ]
    body = "<main>" + "".join(parts) + "</main>"
    return _page(locale, _("Healthy Campus dashboard"), header, body)


def _card(ident: str, label: str, value: str, sub: str = "") -> str:
    return (
        f'<div class="card" id="{ident}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="sub">{escape(sub)}</div></div>'
    )


def _cards(d: Dashboard, _: Translate) -> str:
    f = d.focus
    status = " · ".join(_name(STATUS_NAMES, s, _) + f" {f.status.get(s, 0)}" for s in STATUSES)
    return (
        '<section class="cards">'
        + _card(
            "kpi-checkin",
            _("Checked in today"),
            _pct(f.rate()),
            _("{done} of {total}", done=f.reported_today, total=f.persons),
        )
        + _card("kpi-abnormal", _("Yellow or red"), str(f.abnormal), status)
        + _card(
            "kpi-warnings",
            _("Open warnings"),
            str(f.open_warnings),
            _("acknowledged in 14 days: {count}", count=f.acked_warnings),
        )
        + _card(
            "kpi-returned",
            _("Back on campus"),
            str(f.returned),
            _("{done} of {total}", done=f.returned, total=f.persons),
        )
        + "</section>"
    )


def _trend(d: Dashboard, _: Translate) -> str:
    """The focus unit's check-in rate over the last 14 days, as bars."""
    width, height, top, bottom = 700, 200, 26, 28
    step = width / len(d.days)
    bars = []
    for i, (day, rate) in enumerate(zip(d.days, d.focus.rates, strict=True)):
        h = (rate or 0) * (height - top - bottom)
        x = i * step + step * 0.15
        y = height - bottom - h
        label = _pct(rate) if rate is not None else "—"
        colour = "#0b6e4f" if i == len(d.days) - 1 else "#5fb39a"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{day.isoformat()}: {label}</title></rect>'
            f'<text x="{x + step * 0.35:.1f}" y="{y - 6:.1f}" font-size="15" '
            f'text-anchor="middle">{label.replace(".0%", "%")}</text>'
            f'<text x="{x + step * 0.35:.1f}" y="{height - 8}" font-size="15" '
            f'text-anchor="middle" fill="#52606d">{day:%m-%d}</text>'
        )
    base = height - bottom
    axis = f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="#cbd2d9"/>'
    title = _("Check-in rate, last 14 days")
    return (
        "<section>"
        + _tag("h2", title)
        + f'<svg id="trend" viewBox="0 0 {width} {height}" width="100%" role="img" class="chart" '
        f'aria-label="{escape(title)}">{axis}{"".join(bars)}</svg>'
        "</section>"
    )


def _spark(rates: list[float | None]) -> str:
    points = " ".join(
        f"{i * 6:.0f},{20 - (r or 0) * 18:.1f}" for i, r in enumerate(rates) if r is not None
    )
    return (
        '<svg viewBox="0 0 80 22" width="80" height="22" aria-hidden="true">'
        f'<polyline points="{points}" fill="none" stroke="#0b6e4f" stroke-width="1.6"/></svg>'
    )


def _status_bar(row: UnitFigures) -> str:
    total = sum(row.status.values())
    if not total:
        return '<div class="bar"></div>'
    parts = "".join(
        f'<span style="width:{100 * row.status.get(s, 0) / total:.1f}%;'
        f'background:{STATUS_COLOURS[s]}"></span>'
        for s in STATUSES
    )
    return f'<div class="bar">{parts}</div>'


def _units(d: Dashboard, _: Translate, link: Callable[[str | None], str]) -> str:
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (
            _("Unit"),
            _("Persons"),
            _("Checked in"),
            _("Rate"),
            _("14 days"),
            _("Status"),
            *(_name(STATUS_NAMES, s, _) for s in STATUSES),
            _("Open warnings"),
            _("Back on campus"),
        )
    )
    rows = []
    for row in d.rows:
        if row.key == DIRECT:
            name = escape(_("{unit} (own members)", unit=row.name))
        elif row.drillable:
            name = f'<a href="{link(row.code)}">{escape(row.name)}</a>'
        else:
            name = escape(row.name)
        rows.append(
            f'<tr data-unit="{escape(row.code if row.key != DIRECT else "")}">'
            f"<td>{name}</td><td>{row.persons}</td><td>{row.reported_today}</td>"
            f'<td class="rate">{_pct(row.rate())}</td><td>{_spark(row.rates)}</td>'
            f"<td>{_status_bar(row)}</td><td>{row.status.get('green', 0)}</td>"
            f"<td>{row.status.get('yellow', 0)}</td><td>{row.status.get('red', 0)}</td>"
            f"<td>{row.open_warnings}</td><td>{row.returned}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<section>"
        + _tag("h2", _("By unit"))
        + f'<div class="scroll"><table id="units"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _warnings(d: Dashboard, _: Translate) -> str:
    title = _tag("h2", _("Open warnings"))
    if not d.warnings:
        return _empty("warnings", title, _("None."))
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (_("Person"), _("Unit"), _("Cause"), _("Status"), _("Day"), _("Level"))
    )
    rows = "".join(
        f"<tr><td>{escape(w.masked_name)}</td><td>{escape(w.unit)}</td>"
        f"<td>{escape(_name(CAUSE_NAMES, w.cause, _))}</td>"
        f'<td style="color:{STATUS_COLOURS.get(w.status, "inherit")}">'
        f"{escape(_name(STATUS_NAMES, w.status, _))}</td>"
        f"<td>{w.day:%m-%d}</td><td>{w.level}</td></tr>"
        for w in d.warnings
    )
    more = ""
    if d.focus.open_warnings > len(d.warnings):
        shown = _(
            "The newest {shown} of {total}.", shown=len(d.warnings), total=d.focus.open_warnings
        )
        more = f'<p class="muted">{escape(shown)}</p>'
    return (
        f'<section id="warnings">{title}<div class="scroll"><table><thead><tr>{head}</tr>'
        f"</thead><tbody>{rows}</tbody></table></div>{more}</section>"
    )


def _returns(d: Dashboard, _: Translate) -> str:
    title = _tag("h2", _("Return progress"))
    if not d.batches:
        return _empty("returns", title, _("No return batches."))
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (
            _("Batch"),
            _("Phase"),
            _("Applied"),
            _("Pending"),
            _("Approved"),
            _("Arrived"),
            _("Today"),
        )
    )
    rows = []
    for b in d.batches:
        rows.append(
            f'<tr data-batch="{escape(b.code)}"><td>{escape(b.name)}</td>'
            f"<td>{escape(_name(PHASE_NAMES, b.phase(d.today), _))}</td><td>{b.applied}</td>"
            f"<td>{b.pending}</td><td>{b.approved}</td><td>{b.arrived}</td>"
            f"<td>{b.arrived_today}/{b.arrived_today + b.expected_today}</td></tr>"
        )
    days: dict[str, int] = {}
    for b in d.batches:
        for day, n in b.arrivals_by_day:
            days[day.isoformat()] = days.get(day.isoformat(), 0) + n
    per_day = ""
    if days:
        recent = sorted(days.items())[-14:]
        peak = max(n for _d, n in recent) or 1
        bars = "".join(
            f'<rect x="{i * 50 + 8}" y="{80 - 60 * n / peak:.1f}" width="34" '
            f'height="{60 * n / peak:.1f}" fill="#3e7cb1"><title>{day}: {n}</title></rect>'
            f'<text x="{i * 50 + 25}" y="{74 - 60 * n / peak:.1f}" font-size="12" '
            f'text-anchor="middle">{n}</text>'
            f'<text x="{i * 50 + 25}" y="96" font-size="11" text-anchor="middle" '
            f'fill="#52606d">{day[5:]}</text>'
            for i, (day, n) in enumerate(recent)
        )
        per_day = (
            _tag("p", _("Arrivals per day"), 'class="muted"')
            + f'<svg viewBox="0 0 {50 * len(recent) + 10} 100" width="100%" '
            f'style="max-height:130px;max-width:{75 * len(recent) + 15}px">{bars}</svg>'
        )
    return (
        f'<section id="returns">{title}<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{per_day}</section>"
    )


def _gates(d: Dashboard, _: Translate) -> str:
    title = _tag("h2", _("Entries per gate and hour today"))
    if not d.gates:
        return _empty("gates", title, _("No gates."))
    peak = max((n for g in d.gates for n in g.hours), default=0) or 1
    # The hours worth a column: the usual day, widened to any hour with an entry.
    busy = [h for h in range(24) if any(g.hours[h] for g in d.gates)]
    hours = range(min([6, *busy]), max([22, *busy]) + 1)
    head = (
        _tag("th", _("Gate")) + _tag("th", _("Total")) + "".join(f"<th>{h:02d}</th>" for h in hours)
    )
    rows = []
    for g in d.gates:
        cells = "".join(
            f'<td style="background:rgba(11,110,79,{0.08 + 0.8 * n / peak:.2f})">{n}</td>'
            if n
            else '<td class="muted">·</td>'
            for n in (g.hours[h] for h in hours)
        )
        rows.append(
            f'<tr data-gate="{escape(g.code)}"><td>{escape(g.name)}</td>'
            f'<td class="total">{sum(g.hours)}</td>{cells}</tr>'
        )
    refused = sum(g.refused for g in d.gates)
    note = _("Refused today: {count}.", count=refused)
    if not d.everything:
        note += " " + _("Only the entries of persons in these units are counted.")
    return (
        f'<section id="gates">{title}<div class="scroll"><table class="heat"><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="muted">{escape(note)}</p></section>'
    )


def _meals(d: Dashboard, _: Translate) -> str:
    title = _tag("h2", _("Meal orders per slot today"))
    if not d.meals:
        return _empty("meals", title, _("No menus today."))
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (_("Canteen"), _("Slot"), _("Portions"), _("Capacity"), _("Orders"))
    )
    rows = "".join(
        f"<tr><td>{escape(m.canteen)}</td><td>{escape(_name(SLOT_NAMES, m.slot, _))}</td>"
        f"<td>{m.ordered}</td><td>{m.capacity}</td><td>{m.orders}</td></tr>"
        for m in d.meals
    )
    return (
        f'<section id="meals">{title}<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        + _tag("p", _("Campus-wide: canteens serve every unit."), 'class="muted"')
        + "</section>"
    )
