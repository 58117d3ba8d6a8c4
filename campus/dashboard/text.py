"""The dashboard's headline figures as plain text, for `healthbot stats` (an operator's tool,
in English like the other `stats` tables)."""

from __future__ import annotations

from campus.dashboard.figures import DIRECT, Dashboard, UnitFigures


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _row(name: str, f: UnitFigures) -> str:
    return (
        f"  {name[:28]:<28} {f.persons:>8} {f.reported_today:>8} {_pct(f.rate()):>7} "
        f"{f.status.get('green', 0):>7} {f.status.get('yellow', 0):>7} {f.status.get('red', 0):>6}"
        f" {f.open_warnings:>6} {f.returned:>8}"
    )


def render(d: Dashboard) -> str:
    f = d.focus
    where = " › ".join(name for _code, name in d.path) or "all units"
    lines = [
        f"{where} — {d.today.isoformat()}",
        f"checked in today   {f.reported_today}/{f.persons} ({_pct(f.rate())})",
        f"status             green {f.status.get('green', 0)}, yellow "
        f"{f.status.get('yellow', 0)}, red {f.status.get('red', 0)}",
        f"open warnings      {f.open_warnings} (acknowledged in 14 days: {f.acked_warnings})",
        f"back on campus     {f.returned}/{f.persons}",
        "last 14 days       "
        + " ".join(f"{day:%m-%d} {_pct(rate)}" for day, rate in zip(d.days, f.rates, strict=True)),
        "",
        f"  {'unit':<28} {'persons':>8} {'checked':>8} {'rate':>7} {'green':>7} {'yellow':>7}"
        f" {'red':>6} {'warn':>6} {'returned':>8}",
    ]
    for row in d.rows:
        lines.append(_row(f"{row.name} (own)" if row.key == DIRECT else row.name, row))
    entries = sum(sum(g.hours) for g in d.gates)
    lines.append("")
    lines.append(
        f"gate entries today {entries} ("
        + ", ".join(f"{g.code} {sum(g.hours)}" for g in d.gates)
        + f"); refused {sum(g.refused for g in d.gates)}"
    )
    for b in d.batches:
        lines.append(
            f"return {b.code:<12} applied {b.applied}, pending {b.pending}, approved "
            f"{b.approved}, arrived {b.arrived}; today {b.arrived_today}/"
            f"{b.arrived_today + b.expected_today}"
        )
    for m in d.meals:
        lines.append(f"meals  {m.canteen[:20]:<20} {m.slot:<10} {m.ordered}/{m.capacity} portions")
    return "\n".join(lines)
