"""The registry CSV contract: column names and the vocabularies their values come from."""

from __future__ import annotations

import re

# Column names are a contract with tools outside the project (DESIGN.md, "CSV registries").
COLUMNS: dict[str, tuple[str, ...]] = {
    "units": ("code", "name", "parent_code", "responsible_nos"),
    "places": ("code", "name", "kind", "parent_code", "policy"),
    "persons": (
        "person_no",
        "name",
        "category",
        "unit_code",
        "id_number",
        "phone",
        "roles",
        "responsible_no",
        "home_place_code",
        "locale",
    ),
    "menus": ("canteen_code", "date", "slot", "item_code", "name", "price_cents", "capacity"),
    "batches": ("code", "name", "kind", "unit_codes", "arrive_from", "arrive_to", "daily_quota"),
}
CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PERSON_NO = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_NAME = 200

CATEGORIES = (
    "student",
    "faculty",
    "staff",
    "family",
    "contractor",
    "vendor",
    "partner",
    "resident",
    "temporary",
)
ROLES = ("guard", "responsible", "health_officer", "canteen", "admin")
PLACE_KINDS = (
    "campus",
    "gate",
    "dorm",
    "house",
    "grid",
    "canteen",
    "library",
    "teaching",
    "office",
    "lab",
    "site",
    "other",
)
# The policies every rules file defines (DESIGN.md). `healthbot import` checks places.csv against
# the configured rules file, which may define more; callers without one get these.
KNOWN_POLICIES = frozenset({"open", "green_only", "residents_only", "staff_only", "returned_only"})
DEFAULT_POLICY = "open"
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
