"""Registry import: validation matrix, idempotency, atomicity, dry run, encodings, crypto."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, update

from bot.settings import Settings
from campus.registry.bulk import Advance
from campus.registry.importer import run_import
from campus.secrets import DataVault
from storage.models import AuditEntry, Person

if TYPE_CHECKING:
    from conftest import Registry

# -- units -------------------------------------------------------------------------------------


async def test_units_tree_in_any_order_with_responsibles(registry: Registry) -> None:
    report = await registry.load(
        "units",
        [
            {"code": "CS.AI", "name": "AI Lab", "parent_code": "CS", "responsible_nos": "t002"},
            {"code": "CS", "name": "Computer Science", "parent_code": "UNI"},
            {"code": "UNI", "name": "University", "responsible_nos": "T009; t001;T001"},
        ],
    )
    assert report.errors == []
    assert report.summary() == "units: 3 rows, 3 created, 0 updated, 0 unchanged"
    tree = await registry.all(
        "SELECT u.code, p.code FROM units u LEFT JOIN units p ON p.id = u.parent_id ORDER BY u.code"
    )
    assert [tuple(r) for r in tree] == [("CS", "UNI"), ("CS.AI", "CS"), ("UNI", None)]
    held = await registry.all(
        "SELECT u.code, r.person_no FROM unit_responsibles r JOIN units u ON u.id = r.unit_id "
        "ORDER BY u.code, r.person_no"
    )
    assert [tuple(r) for r in held] == [("CS.AI", "T002"), ("UNI", "T001"), ("UNI", "T009")]


BAD_UNITS = [
    ({"code": "a b", "name": "X"}, "line 2: code: 'a b' is not a code"),
    ({"code": "", "name": "X"}, "line 2: code: is empty"),
    ({"code": "X" * 65, "name": "X"}, "line 2: code: 'XXXX"),
    ({"code": "U1", "name": ""}, "line 2: name: is empty"),
    ({"code": "U1", "name": "n" * 201}, "line 2: name: is 201 characters long, at most 200"),
    (
        {"code": "U1", "name": "X", "parent_code": "NOPE"},
        "line 2: parent_code: unknown unit 'NOPE'",
    ),
    (
        {"code": "U1", "name": "X", "parent_code": "U1"},
        "line 2: parent_code: 'U1' cannot be its own",
    ),
    ({"code": "U1", "name": "X", "responsible_nos": "T1;t 2"}, "line 2: responsible_nos: 't 2' is"),
]


@pytest.mark.parametrize(("row", "error"), BAD_UNITS)
async def test_bad_unit_rows(registry: Registry, row: dict[str, str], error: str) -> None:
    report = await registry.load("units", [row])
    assert len(report.errors) == 1 and report.errors[0].startswith(error), report.errors
    assert await registry.count("units") == 0


async def test_unit_cycles_and_duplicates_name_every_line(registry: Registry) -> None:
    report = await registry.load(
        "units",
        [
            {"code": "A", "name": "A", "parent_code": "B"},
            {"code": "B", "name": "B", "parent_code": "A"},
            {"code": "C", "name": "C"},
            {"code": "C", "name": "C again"},
        ],
    )
    assert report.errors == [
        "line 2: parent_code: 'B' makes a cycle: A → B → A",
        "line 3: parent_code: 'A' makes a cycle: A → B → A",
        "line 5: code: 'C' is also on line 4",
    ]
    assert report.summary() == "units: 4 rows, 3 errors; nothing written"


async def test_unit_parent_from_the_database_and_cycles_through_it(registry: Registry) -> None:
    assert (await registry.load("units", [{"code": "UNI", "name": "University"}])).ok
    child = {"code": "CS", "name": "Computer Science", "parent_code": "UNI"}
    assert (await registry.load("units", [child])).created == 1
    # Re-parenting the stored root under its own child closes a loop through the database.
    report = await registry.load("units", [{"code": "UNI", "name": "U", "parent_code": "CS"}])
    assert report.errors == ["line 2: parent_code: 'CS' makes a cycle: UNI → CS → UNI"]


async def test_unit_upsert_replaces_the_responsible_set(registry: Registry) -> None:
    await registry.load("units", [{"code": "CS", "name": "CS", "responsible_nos": "T1;T2"}])
    report = await registry.load("units", [{"code": "CS", "name": "CS", "responsible_nos": "T3"}])
    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    assert await registry.all("SELECT person_no FROM unit_responsibles") == [("T3",)]


# -- places ------------------------------------------------------------------------------------


async def test_places_with_kinds_and_default_policy(registry: Registry) -> None:
    await registry.campus()
    rows = await registry.all("SELECT code, kind, policy FROM places ORDER BY code")
    assert [tuple(r) for r in rows] == [
        ("G1", "grid", "open"),
        ("H101", "house", "open"),
        ("MAIN", "campus", "open"),
    ]
    report = await registry.load(
        "places", [{"code": "G1", "name": "Grid 1", "kind": "grid", "policy": "residents_only"}]
    )
    assert (report.updated, await registry.all("SELECT policy FROM places WHERE code = 'G1'")) == (
        1,
        [("residents_only",)],
    )


BAD_PLACES = [
    ({"code": "P", "name": "P", "kind": "castle"}, "line 2: kind: unknown kind 'castle' (one of"),
    ({"code": "P", "name": "P", "kind": "gate", "policy": "vip"}, "line 2: policy: unknown policy"),
    (
        {"code": "P", "name": "P", "kind": "gate", "parent_code": "X"},
        "line 2: parent_code: unknown",
    ),
    ({"code": "P!", "name": "P", "kind": "gate"}, "line 2: code: 'P!' is not a code"),
    ({"code": "P", "name": "", "kind": ""}, "line 2: name: is empty"),
]


@pytest.mark.parametrize(("row", "error"), BAD_PLACES)
async def test_bad_place_rows(registry: Registry, row: dict[str, str], error: str) -> None:
    report = await registry.load("places", [row])
    assert report.errors and report.errors[0].startswith(error), report.errors
    assert await registry.count("places") == 0


async def test_places_may_name_any_policy_of_the_rules_file(
    registry: Registry, tmp_path: Path
) -> None:
    row = {"code": "R1", "name": "Reading room", "kind": "library", "policy": "reading_room"}
    report = await run_import(
        registry.settings, "places", registry.csv("places", [row]), dry_run=False
    )
    assert report.errors == []  # the shipped rules file defines reading_room
    rules = tmp_path / "rules.yaml"
    rules.write_text("policies:\n  open: {}\n")
    settings = registry.settings.model_copy(update={"rules_file": str(rules)})
    report = await run_import(settings, "places", registry.csv("places", [row]), dry_run=False)
    assert len(report.errors) == 1 and "policies: missing green_only" in report.errors[0]


async def test_place_cycle(registry: Registry) -> None:
    report = await registry.load(
        "places",
        [
            {"code": "A", "name": "A", "kind": "grid", "parent_code": "C"},
            {"code": "B", "name": "B", "kind": "grid", "parent_code": "A"},
            {"code": "C", "name": "C", "kind": "grid", "parent_code": "B"},
        ],
    )
    assert len(report.errors) == 3
    assert all("makes a cycle: A → C → B → A" in e for e in report.errors)


# -- persons -----------------------------------------------------------------------------------


async def test_persons_are_created_with_every_field(registry: Registry) -> None:
    await registry.campus()
    rows = [
        # The responsible comes after the person they host: file order does not matter.
        registry.person(
            1,
            person_no="c0001",
            category="contractor",
            responsible_no="t0001",
            home_place_code="H101",
            roles="",
            phone="+86 138-0000-0001",
        ),
        registry.person(
            2, person_no="T0001", category="faculty", roles="admin; guard", locale="en"
        ),
        registry.person(3, id_number="e12345678", phone=""),  # a passport, no phone
    ]
    report = await registry.load("persons", rows)
    assert report.errors == []
    assert report.summary() == "persons: 3 rows, 3 created, 0 updated, 0 unchanged"
    stored = {
        r.person_no: r
        for r in await registry.all(
            "SELECT p.*, h.person_no AS host, pl.code AS home FROM persons p "
            "LEFT JOIN persons h ON h.id = p.responsible_id "
            "LEFT JOIN places pl ON pl.id = p.home_place_id"
        )
    }
    assert set(stored) == {"C0001", "T0001", "S00003"}
    c = stored["C0001"]
    assert (c.category, c.host, c.home, c.state, c.locale) == (
        "contractor",
        "T0001",
        "H101",
        "active",
        "zh_CN",
    )
    assert registry.vault.decrypt(c.phone_cipher) == "13800000001"
    assert stored["T0001"].roles == "guard;admin"  # canonical order
    assert stored["T0001"].locale == "en"
    assert registry.vault.decrypt(stored["S00003"].id_cipher) == "E12345678"
    assert stored["S00003"].phone_cipher is None


BAD_PERSONS = [
    ({"person_no": "s 1"}, "person_no: 's 1' is not a person number"),
    ({"name": ""}, "name: is empty"),
    ({"name": "张\n三"}, "name: contains a line break"),
    ({"category": "alien"}, "category: unknown category 'alien' (one of student, faculty"),
    ({"unit_code": "EE"}, "unit_code: unknown unit 'EE' (import units.csv first)"),
    ({"unit_code": ""}, "unit_code: is empty"),
    ({"id_number": ""}, "id_number: ID number is empty"),
    ({"id_number": "420101199001019990"}, "id_number: resident ID check digit does not match"),
    ({"id_number": "12345"}, "id_number: not an 18-digit resident ID nor a passport number"),
    ({"phone": "12345678901"}, "phone: '123****8901' is not an 11-digit mainland mobile number"),
    ({"roles": "guard;boss"}, "roles: unknown role 'boss' (any of guard, responsible"),
    ({"responsible_no": "NOBODY"}, "responsible_no: unknown person 'NOBODY'"),
    ({"responsible_no": "s00001"}, "responsible_no: 'S00001' is the person themself"),
    ({"home_place_code": "H999"}, "home_place_code: unknown place 'H999'"),
    ({"locale": "fr"}, "locale: unknown locale 'fr' (one of zh_CN, en)"),
]


@pytest.mark.parametrize(("values", "error"), BAD_PERSONS)
async def test_bad_person_rows(registry: Registry, values: dict[str, str], error: str) -> None:
    await registry.campus()
    rows = [registry.person(0), registry.person(1, **values), registry.person(2)]
    report = await registry.load("persons", rows)
    assert len(report.errors) == 1 and report.errors[0].startswith(f"line 3: {error}"), (
        report.errors
    )
    assert await registry.count("persons") == 0


async def test_bad_ids_and_phones_are_masked_in_errors(registry: Registry) -> None:
    await registry.campus()
    bad_id = registry.id_number(7)[:-1] + ("0" if registry.id_number(7)[-1] != "0" else "1")
    report = await registry.load("persons", [registry.person(7, id_number=bad_id, phone="1991234")])
    text = "\n".join(report.errors)
    assert f"'{bad_id[:4]}**********{bad_id[-4:]}'" in text
    assert bad_id not in text and "1991234" not in text


async def test_duplicates_in_the_file(registry: Registry) -> None:
    await registry.campus()
    rows = [
        registry.person(1),
        registry.person(2, person_no="s00001"),  # same number, other case
        registry.person(3, id_number=registry.id_number(1).lower()),
    ]
    report = await registry.load("persons", rows)
    masked = registry.id_number(1)[:4] + "*" * 10 + registry.id_number(1)[-4:]
    assert report.errors == [
        "line 3: person_no: 'S00001' is also on line 2",
        f"line 4: id_number: '{masked}' is also on line 2",
    ]


async def test_an_id_number_held_by_someone_else_in_the_database(registry: Registry) -> None:
    await registry.campus()
    assert (await registry.load("persons", [registry.person(1), registry.person(2)])).ok
    report = await registry.load("persons", [registry.person(3, id_number=registry.id_number(1))])
    assert report.errors == ["line 2: id_number: already belongs to person_no 'S00001'"]
    # Two people in the file swapping ID numbers is no conflict.
    swap = [
        registry.person(1, id_number=registry.id_number(2)),
        registry.person(2, id_number=registry.id_number(1)),
    ]
    report = await registry.load("persons", swap)
    assert (report.errors, report.updated) == ([], 2)


async def test_every_bad_column_of_a_row_is_reported(registry: Registry) -> None:
    await registry.campus()
    row = registry.person(1, category="x", phone="1", roles="boss", locale="de")
    report = await registry.load("persons", [row])
    assert [e.split(":")[1].strip() for e in report.errors] == [
        "category",
        "phone",
        "roles",
        "locale",
    ]


async def test_line_numbers_are_physical_lines(registry: Registry) -> None:
    await registry.campus()
    header = "code,name,kind,parent_code,policy\n"
    data = (
        header
        + 'NEW1,"A name\nover two lines",gate,,\n'  # lines 2-3
        + "\n"  # line 4: blank, skipped
        + "NEW2,Gate 2,castle,,\n"  # line 5
        + "NEW3,Gate 3,gate,,,extra\n"  # line 6
        + ",,,,\n"  # line 7: Excel's empty row, skipped
        + "NEW4,Gate 4,gate,NOPE,\n"  # line 8
    )
    report = await registry.load("places", registry.raw(data.encode()))
    assert report.errors == [
        "line 2: name: contains a line break or a control character",
        "line 5: kind: unknown kind 'castle' (one of campus, gate, dorm, house, grid, canteen, "
        "library, teaching, office, lab, site, other)",
        "line 6: expected 5 fields, found 6 (a value with a comma needs double quotes)",
        "line 8: parent_code: unknown place 'NOPE'",
    ]
    assert report.rows == 4


# -- upsert ------------------------------------------------------------------------------------


async def test_second_import_changes_nothing(registry: Registry) -> None:
    await registry.campus()
    rows = [
        registry.person(i, responsible_no="S00009" if i < 9 else "", home_place_code="H101")
        for i in range(1, 11)
    ]
    assert (await registry.load("persons", rows)).created == 10
    before = await registry.all("SELECT * FROM persons ORDER BY id")
    places_before = await registry.all("SELECT * FROM places ORDER BY id")
    await registry.campus()  # the units and places again
    report = await registry.load("persons", rows)
    assert report.summary() == "persons: 10 rows, 0 created, 0 updated, 10 unchanged"
    assert await registry.all("SELECT * FROM persons ORDER BY id") == before  # ciphertexts too
    assert await registry.all("SELECT * FROM places ORDER BY id") == places_before
    for kind in ("units", "places", "persons"):
        (last,) = await registry.all(
            "SELECT reason FROM audit_log WHERE reason LIKE :kind ORDER BY id DESC LIMIT 1",
            kind=f"{kind}:%",
        )
        assert last == (f"{kind}: 0 created, 0 updated",)


async def test_a_change_updates_only_that_row(registry: Registry) -> None:
    await registry.campus()
    rows = [registry.person(i) for i in range(1, 4)]
    await registry.load("persons", rows)
    before = {r.person_no: r for r in await registry.all("SELECT * FROM persons")}
    rows[1]["phone"] = "13912345678"
    rows[2]["id_number"] = registry.id_number(33)
    report = await registry.load("persons", rows)
    assert (report.created, report.updated, report.unchanged) == (0, 2, 1)
    after = {r.person_no: r for r in await registry.all("SELECT * FROM persons")}
    assert after["S00001"] == before["S00001"]
    assert after["S00002"].updated_at != before["S00002"].updated_at
    assert registry.vault.decrypt(after["S00002"].phone_cipher) == "13912345678"
    assert after["S00003"].id_hash == registry.vault.lookup_hash(registry.id_number(33), "id")


async def test_import_leaves_registration_fields_and_chosen_language_alone(
    registry: Registry,
) -> None:
    await registry.campus()
    await registry.load("persons", [registry.person(1, category="vendor")])
    async with registry.sessions.begin() as session:
        await session.execute(
            update(Person).values(valid_until=date(2030, 1, 31), state="expired", locale="en")
        )
    # An empty locale keeps the language the person chose in chat.
    report = await registry.load("persons", [registry.person(1, category="vendor")])
    assert report.unchanged == 1
    report = await registry.load("persons", [registry.person(1, category="contractor")])
    assert report.updated == 1
    row = (await registry.all("SELECT valid_until, state, locale, category FROM persons"))[0]
    assert (str(row.valid_until), row.state, row.locale, row.category) == (
        "2030-01-31",
        "expired",
        "en",
        "contractor",
    )


async def test_a_bad_row_writes_nothing(registry: Registry) -> None:
    await registry.campus()
    await registry.load("persons", [registry.person(1)])
    before = await registry.all("SELECT * FROM persons")
    audits = await registry.count("audit_log")
    rows = [registry.person(1, name="Renamed"), *[registry.person(i) for i in range(2, 50)]]
    rows.append(registry.person(99, category="wizard"))
    report = await registry.load("persons", rows)
    assert report.errors == [
        "line 51: category: unknown category 'wizard' (one of student, "
        "faculty, staff, family, contractor, vendor, partner, resident, "
        "temporary)"
    ]
    assert await registry.all("SELECT * FROM persons") == before
    assert await registry.count("audit_log") == audits


async def test_dry_run_reports_and_writes_nothing(registry: Registry) -> None:
    await registry.campus()
    await registry.load("persons", [registry.person(1), registry.person(2)])
    before = await registry.all("SELECT * FROM persons")
    audits = await registry.count("audit_log")
    rows = [registry.person(1), registry.person(2, name="New name"), registry.person(3)]
    report = await registry.load("persons", rows, dry_run=True)
    assert report.summary() == (
        "persons: 3 rows, 1 created, 1 updated, 1 unchanged (dry run, nothing written)"
    )
    assert await registry.all("SELECT * FROM persons") == before
    assert await registry.count("audit_log") == audits


async def test_one_audit_entry_per_run(registry: Registry) -> None:
    await registry.campus()
    await registry.load("persons", [registry.person(i) for i in range(5)])
    async with registry.sessions() as session:
        entries = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    assert [(e.actor, e.action, e.subject_person_id, e.reason) for e in entries] == [
        ("cli", "import", None, "units: 2 created, 0 updated"),
        ("cli", "import", None, "places: 3 created, 0 updated"),
        ("cli", "import", None, "persons: 5 created, 0 updated"),
    ]


async def test_progress_counts_every_written_row(registry: Registry) -> None:
    seen: list[tuple[str, int, int]] = []

    @contextmanager
    def recording(label: str, total: int) -> Iterator[Advance]:
        done = [0]
        yield lambda n: done.__setitem__(0, done[0] + n)
        seen.append((label, total, done[0]))

    registry.progress = recording
    await registry.campus()
    await registry.load("persons", [registry.person(i) for i in range(2500)])
    assert seen[-1] == ("writing persons", 2500, 2500)


# -- personal data at rest ---------------------------------------------------------------------


async def test_id_numbers_and_phones_are_encrypted_and_found_by_hash(registry: Registry) -> None:
    await registry.campus()
    await registry.load("persons", [registry.person(5)])
    (row,) = await registry.all("SELECT * FROM persons")
    for column in ("id_hash", "id_cipher", "phone_cipher"):
        raw = bytes(row._mapping[column], "ascii") if column == "id_hash" else row._mapping[column]
        assert registry.id_number(5).encode() not in raw
        assert b"13800000005" not in raw
    if registry.url.startswith("sqlite"):
        db_file = Path(registry.url.split("///", 1)[1])
        await registry.engine.dispose()  # checkpoint the WAL into the file
        for path in (db_file, Path(f"{db_file}-wal")):
            data = path.read_bytes() if path.exists() else b""
            assert registry.id_number(5).encode() not in data and b"13800000005" not in data
    async with registry.sessions() as session:
        found = await session.scalar(
            select(Person.person_no).where(
                Person.id_hash == registry.vault.lookup_hash(registry.id_number(5), "id")
            )
        )
    assert found == "S00005"


# -- files -------------------------------------------------------------------------------------


async def test_a_bom_is_accepted(registry: Registry) -> None:
    path = registry.csv("units", [{"code": "UNI", "name": "大学"}])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    report = await registry.load("units", path)
    assert (report.errors, report.created) == ([], 1)


async def test_a_gbk_file_is_refused_with_its_line(registry: Registry) -> None:
    data = "code,name,parent_code,responsible_nos\nUNI,University,,\nCS,计算机学院,UNI,\n"
    report = await registry.load("units", registry.raw(data.encode("gbk")))
    assert len(report.errors) == 1
    assert report.errors[0].startswith("line 3: the file is not UTF-8 (byte 0xbc at column 4)")
    assert await registry.count("units") == 0


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (
            "code,name,parent_code",
            "line 1: missing column 'responsible_nos'; expected code,name,parent_code,"
            "responsible_nos",
        ),
        (
            "code,name,parent_code,responsible_nos,colour",
            "line 1: unknown column 'colour'; expected",
        ),
        ("code,name,name,parent_code,responsible_nos", "line 1: repeated column 'name'"),
        ("", "line 1: the file is empty; expected the header code,name,parent_code"),
    ],
)
async def test_header_problems(registry: Registry, header: str, error: str) -> None:
    report = await registry.load(
        "units", registry.raw(f"{header}\nUNI,U,,\n".encode() if header else b"")
    )
    assert len(report.errors) == 1 and report.errors[0].startswith(error), report.errors


async def test_malformed_quoting_names_its_line(registry: Registry) -> None:
    data = 'code,name,parent_code,responsible_nos\nUNI,"Uni"versity,,\n'
    report = await registry.load("units", registry.raw(data.encode()))
    assert report.errors[0].startswith("line 2: malformed CSV")


async def test_data_that_cannot_be_decrypted_is_an_error(registry: Registry) -> None:
    await registry.campus()
    await registry.load("persons", [registry.person(1)])
    registry.vault = DataVault.from_setting("another-key")
    report = await registry.load("persons", [registry.person(1)])
    assert report.errors == ["stored personal data cannot be decrypted with HEALTHBOT_DATA_KEY"]


async def test_an_unreachable_database_is_an_error(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql+asyncpg://hb:pa55word@127.0.0.1:9/nowhere",
    )
    path = tmp_path / "units.csv"
    path.write_text("code,name,parent_code,responsible_nos\n")
    report = await run_import(settings, "units", path, dry_run=False)
    assert len(report.errors) == 1
    assert report.errors[0].startswith("cannot use the database in HEALTHBOT_DATABASE_URL (")
    assert "pa55word" not in report.errors[0]


async def test_run_import_from_settings(registry: Registry, tmp_path: Path) -> None:
    """The CLI's entry point creates, migrates and disposes its own engine."""
    path = registry.csv("units", [{"code": "UNI", "name": "University"}])
    report = await run_import(registry.settings, "units", path, dry_run=False)
    assert report.summary() == "units: 1 row, 1 created, 0 updated, 0 unchanged"
    assert await registry.count("units") == 1


async def test_a_changed_person_is_not_answered_from_a_cached_principal(
    registry: Registry, redis_url: str
) -> None:
    """A guard whose role the registry removes loses it with their next message: the import
    drops the cached principals of the persons it changed (and only theirs)."""
    import secrets as tokens
    from datetime import UTC, datetime

    from bot.keyspace import Keyspace
    from bot.kv import RedisKV
    from campus.accounts import DROPPED
    from storage.models import WeChatAccount

    await registry.campus()
    rows = [registry.person(1, roles="guard"), registry.person(2, roles="guard")]
    assert (await registry.load("persons", rows)).created == 2
    ids = dict(await registry.all("SELECT person_no, id FROM persons"))
    async with registry.sessions.begin() as session:
        for no, openid in (("S00001", "o_guard1"), ("S00002", "o_guard2")):
            session.add(WeChatAccount(openid=openid, person_id=ids[no], bound_at=datetime.now(UTC)))
    appid = f"wximport{tokens.token_hex(4)}"
    keys, kv = Keyspace(appid), RedisKV.from_url(redis_url)
    try:
        for openid in ("o_guard1", "o_guard2"):
            await kv.set(keys.profile(openid), '{"roles": ["guard"]}', 60)
        settings = registry.settings.model_copy(
            update={"redis_url": redis_url, "wechat_appid": appid}
        )
        rows[0]["roles"] = ""
        report = await run_import(settings, "persons", registry.csv("persons", rows), dry_run=False)
        assert report.summary() == "persons: 2 rows, 0 created, 1 updated, 1 unchanged"
        first, second = await kv.get_many([keys.profile("o_guard1"), keys.profile("o_guard2")])
        assert first is not None and first.startswith(DROPPED)
        assert second == b'{"roles": ["guard"]}'
    finally:
        await kv.redis.delete(keys.profile("o_guard1"), keys.profile("o_guard2"))
        await kv.close()


async def test_an_import_with_redis_down_is_still_written(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """The drop comes after the commit: Redis being down costs a warning, not the import."""
    from datetime import UTC, datetime

    from storage.models import WeChatAccount

    await registry.campus()
    rows = [registry.person(1, roles="guard")]
    await registry.load("persons", rows)
    async with registry.sessions.begin() as session:
        (person_id,) = (await registry.all("SELECT id FROM persons"))[0]
        session.add(WeChatAccount(openid="o_g", person_id=person_id, bound_at=datetime.now(UTC)))
    rows[0]["roles"] = ""
    settings = registry.settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    report = await run_import(settings, "persons", registry.csv("persons", rows), dry_run=False)
    assert report.ok and report.updated == 1
    assert await registry.all("SELECT roles FROM persons") == [("",)]
    assert "could not drop the cached principals" in caplog.text
