"""The trace: one SQL statement that self-joins the access records over the window.

A *visit* is an allowed entry (`in`) of a person at a place. It ends at that person's next
record at the same place: an exit (`out`) closes it then, if it came within `max_stay`;
another entry, or nothing, closes it after the place kind's dwell time (or at that next
entry, if sooner). An exit with no entry before it opens nothing. Two persons are in
*contact* when a visit of the other overlaps a visit of the case widened by the margin on
both sides, at the same place (or, with `subtree`, anywhere in the same building). Ranges
that only touch (one ends the instant the other begins) are not a contact: the margin is
the tolerance. Everything is compared in UTC epoch seconds; the campus time zone only
matters for display.

The statement reads the case's records through ix_access_records_person_at, then, per place
the case visited, the records within reach of each visit through ix_access_records_place_at
(see migration 0008 for the indexes); nothing is loaded into Python but the encounters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Boolean, Float, Integer, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from campus.registry.formats import PLACE_KINDS
from campus.tracing.rules import TracingRules
from storage.models import UTCDateTime


@dataclass(frozen=True, slots=True)
class Encounter:
    """One visit of a contact overlapping one (widened) visit of the case."""

    person_id: int
    place_id: int
    place_code: str
    place_name: str
    start: datetime  # the contact's visit, UTC
    end: datetime
    overlap_from: datetime  # the part that overlaps the case's widened visit
    overlap_to: datetime

    @property
    def overlap(self) -> timedelta:
        return self.overlap_to - self.overlap_from


@dataclass(frozen=True, slots=True)
class Contact:
    """A person who shared a place with the case, with every encounter, ranked by overlap."""

    person_id: int
    person_no: str
    name: str
    unit_id: int
    encounters: tuple[Encounter, ...]
    overlap: timedelta  # the union of the encounters' overlaps (no double counting)

    @property
    def overlap_minutes(self) -> int:
        return int(-(-self.overlap.total_seconds() // 60))  # a started minute counts

    @property
    def main(self) -> Encounter:
        """The encounter with the longest overlap (ties: the earliest)."""
        return min(self.encounters, key=lambda e: (-e.overlap, e.overlap_from))

    @property
    def first(self) -> datetime:
        return min(e.overlap_from for e in self.encounters)


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime  # the case's visits that began in [since, until)
    until: datetime
    margin: timedelta


def _epoch(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM {column}) AS DOUBLE PRECISION)"
    # julianday() is a double: round to the millisecond so equal instants compare equal.
    return f"round((julianday({column}) - 2440587.5) * 86400.0, 3)"


def _from_epoch(dialect: str, expr: str) -> str:
    if dialect == "postgresql":
        return f"to_timestamp({expr})"
    # The stored text is 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); this compares with it as text.
    return f"strftime('%Y-%m-%d %H:%M:%f', {expr}, 'unixepoch')"


def _dwell_sql(rules: TracingRules, kind: str) -> str:
    # Kinds and minutes were validated when the rules were read: safe to inline.
    arms = " ".join(
        f"WHEN '{k}' THEN {int(rules.dwell(k).total_seconds())}"
        for k in PLACE_KINDS
        if k.isidentifier()
    )
    return f"(CASE {kind} {arms} ELSE {int(rules.dwell('other').total_seconds())} END)"


def _visit_end(dialect: str, alias: str, dwell: str) -> str:
    start, nxt = _epoch(dialect, f"{alias}.at"), _epoch(dialect, f"{alias}.next_at")
    return (
        f"(CASE WHEN {alias}.next_at IS NOT NULL AND {alias}.next_dir = 'out' "
        f"AND {nxt} <= {start} + :max_stay THEN {nxt} "
        f"WHEN {alias}.next_at IS NOT NULL AND {nxt} < {start} + {dwell} THEN {nxt} "
        f"ELSE {start} + {dwell} END)"
    )


def _match_places(rules: TracingRules, subtree: bool) -> str:
    kinds = [k for k in rules.building_kinds if k in PLACE_KINDS]
    if not subtree or not kinds:
        return """
match_places AS (
  SELECT DISTINCT place_id AS case_place, place_id AS place_id FROM case_visits
)"""
    listed = ", ".join(f"'{k}'" for k in kinds)
    # A place's building: walk up while the parent is of a building kind (a room in a dorm,
    # a dorm's door); then every place below that building matches. Only the validated place
    # kinds are spliced in; every value is a bound parameter.
    return f"""
up(place_id, cur_id, parent_id, depth) AS (
  SELECT p.id, p.id, p.parent_id, 0 FROM places p
  WHERE p.id IN (SELECT place_id FROM case_visits)
  UNION ALL
  SELECT u.place_id, pp.id, pp.parent_id, u.depth + 1
  FROM up u JOIN places pp ON pp.id = u.parent_id
  WHERE pp.kind IN ({listed}) AND u.depth < 30
),
buildings AS (
  SELECT u.place_id AS place_id, u.cur_id AS building_id FROM up u
  WHERE NOT EXISTS (SELECT 1 FROM up u2 WHERE u2.place_id = u.place_id AND u2.depth > u.depth)
),
down(building_id, place_id, depth) AS (
  SELECT DISTINCT b.building_id, b.building_id, 0 FROM buildings b
  UNION ALL
  SELECT d.building_id, p.id, d.depth + 1
  FROM down d JOIN places p ON p.parent_id = d.place_id
  WHERE d.depth < 30
),
match_places AS (
  SELECT DISTINCT b.place_id AS case_place, d.place_id AS place_id
  FROM buildings b JOIN down d ON d.building_id = b.building_id
)"""  # noqa: S608


def trace_sql(dialect: str, rules: TracingRules, subtree: bool) -> str:
    e = lambda column: _epoch(dialect, column)  # noqa: E731
    dwell = _dwell_sql(rules, "p.kind")
    low = _from_epoch(dialect, "cv.s - :margin - :reach")
    high = _from_epoch(dialect, "cv.e + :margin + :reach + 1")
    # Spliced in: dialect fragments and the validated dwell table; values are bound parameters.
    return f"""
WITH RECURSIVE
case_recs AS (
  SELECT r.place_id AS place_id, r.direction AS direction, r.at AS at,
         LEAD(r.at) OVER w AS next_at, LEAD(r.direction) OVER w AS next_dir
  FROM access_records r
  WHERE r.person_id = :case_id AND r.allowed = :yes AND r.at >= :since AND r.at < :read_until
  WINDOW w AS (PARTITION BY r.place_id ORDER BY r.at, r.id)
),
case_visits AS (
  SELECT c.place_id AS place_id, {e("c.at")} AS s, {_visit_end(dialect, "c", dwell)} AS e
  FROM case_recs c JOIN places p ON p.id = c.place_id
  WHERE c.direction = 'in' AND c.at < :until
),
{_match_places(rules, subtree)},
scan AS (
  SELECT DISTINCT r.id AS id, r.person_id AS person_id, r.place_id AS place_id,
         r.direction AS direction, r.at AS at
  -- CROSS JOIN keeps this order on SQLite (the case's visits outside, the records inside, by
  -- ix_access_records_place_at); PostgreSQL plans it as the inner join it is.
  FROM case_visits cv
  CROSS JOIN match_places m
  CROSS JOIN access_records r
  WHERE m.case_place = cv.place_id AND r.place_id = m.place_id
    AND r.at >= {low} AND r.at <= {high}
    AND r.allowed = :yes AND r.person_id IS NOT NULL AND r.person_id <> :case_id
    AND r.at >= :floor
),
other_recs AS (
  SELECT o.person_id AS person_id, o.place_id AS place_id, o.direction AS direction,
         o.at AS at, LEAD(o.at) OVER w AS next_at, LEAD(o.direction) OVER w AS next_dir
  FROM scan o
  WINDOW w AS (PARTITION BY o.person_id, o.place_id ORDER BY o.at, o.id)
),
other_visits AS (
  SELECT o.person_id AS person_id, o.place_id AS place_id, {e("o.at")} AS s,
         {_visit_end(dialect, "o", dwell)} AS e
  FROM other_recs o JOIN places p ON p.id = o.place_id
  WHERE o.direction = 'in'
),
pairs AS (
  SELECT ov.person_id AS person_id, ov.place_id AS place_id, ov.s AS s, ov.e AS e,
    CASE WHEN ov.s > cv.s - :margin THEN ov.s ELSE cv.s - :margin END AS o_from,
    CASE WHEN ov.e < cv.e + :margin THEN ov.e ELSE cv.e + :margin END AS o_to
  FROM case_visits cv
  JOIN match_places m ON m.case_place = cv.place_id
  JOIN other_visits ov ON ov.place_id = m.place_id
   AND ov.s < cv.e + :margin AND ov.e > cv.s - :margin
)
SELECT pr.person_id, pe.person_no, pe.name, pe.unit_id, pr.place_id, pl.code, pl.name,
       pr.s, pr.e, pr.o_from, pr.o_to
FROM pairs pr
JOIN persons pe ON pe.id = pr.person_id
JOIN places pl ON pl.id = pr.place_id
"""  # noqa: S608


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(round(epoch, 3), UTC)


async def trace(
    session: AsyncSession,
    case_id: int,
    window: Window,
    rules: TracingRules,
    *,
    now: datetime,
    subtree: bool | None = None,
) -> list[Contact]:
    """Everyone who shared a place with the case in the window, most exposed first.

    Nothing older than the retention period is read, whatever the window asks.
    """
    floor = now - timedelta(days=rules.retention_days)
    since = max(window.since, floor)
    until = min(window.until, now)
    if since >= until:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # The range scans' estimates cross jit_above_cost, and compiling costs more (~200 ms)
        # than the whole query; off for this transaction only.
        await session.execute(text("SET LOCAL jit = off"))
    sql = text(trace_sql(dialect, rules, rules.subtree if subtree is None else subtree))
    reach = max(rules.max_stay, max(rules.dwell(k) for k in PLACE_KINDS))
    stamp = UTCDateTime()
    sql = sql.bindparams(
        bindparam("case_id", type_=Integer()),
        bindparam("yes", type_=Boolean()),
        bindparam("since", type_=stamp),
        bindparam("until", type_=stamp),
        bindparam("read_until", type_=stamp),
        bindparam("floor", type_=stamp),
        bindparam("margin", type_=Float()),
        bindparam("reach", type_=Float()),
        bindparam("max_stay", type_=Float()),
    )
    rows = await session.execute(
        sql,
        {
            "case_id": case_id,
            "yes": True,
            "since": since,
            "until": until,
            "read_until": until + rules.max_stay,
            "floor": floor,
            "margin": window.margin.total_seconds(),
            "reach": reach.total_seconds(),
            "max_stay": rules.max_stay.total_seconds(),
        },
    )
    return group(rows.all())


def group(rows: Sequence[Sequence[object]]) -> list[Contact]:
    by_person: dict[int, list[Encounter]] = defaultdict(list)
    who: dict[int, tuple[str, str, int]] = {}
    for pid, no, name, unit_id, place_id, code, place, s, e, o_from, o_to in rows:
        person_id = int(pid)  # type: ignore[call-overload]
        who[person_id] = (str(no), str(name), int(unit_id))  # type: ignore[call-overload]
        encounter = Encounter(
            person_id,
            int(place_id),  # type: ignore[call-overload]
            str(code),
            str(place),
            _at(float(s)),  # type: ignore[arg-type]
            _at(float(e)),  # type: ignore[arg-type]
            _at(float(o_from)),  # type: ignore[arg-type]
            _at(float(o_to)),  # type: ignore[arg-type]
        )
        if encounter not in by_person[person_id]:
            by_person[person_id].append(encounter)
    contacts = [
        Contact(
            pid,
            *who[pid],
            encounters=tuple(sorted(found, key=lambda x: x.overlap_from)),
            overlap=_union(found),
        )
        for pid, found in by_person.items()
    ]
    contacts.sort(key=lambda c: (-c.overlap, c.first, c.person_no))
    return contacts


def _union(encounters: Sequence[Encounter]) -> timedelta:
    total = timedelta()
    end: datetime | None = None
    for e in sorted(encounters, key=lambda x: x.overlap_from):
        start = e.overlap_from if end is None else max(e.overlap_from, end)
        if e.overlap_to > start:
            total += e.overlap_to - start
        end = e.overlap_to if end is None else max(end, e.overlap_to)
    return total
