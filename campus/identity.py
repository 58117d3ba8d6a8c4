"""Identity documents and phones: validation and masking (no storage, no crypto)."""

from __future__ import annotations

import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_RESIDENT_ID = re.compile(r"^\d{17}[\dX]$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,17}$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")


class InvalidIdNumber(ValueError):
    pass


def resident_id_check_digit(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def normalise_id_number(raw: str) -> str:
    """Upper-case, strip spaces; raise InvalidIdNumber naming what is wrong."""
    value = raw.strip().replace(" ", "").upper()
    if not value:
        raise InvalidIdNumber("ID number is empty")
    if len(value) == 18 and value[:17].isdigit():
        if not _RESIDENT_ID.match(value):
            raise InvalidIdNumber("resident ID has a bad last character")
        if resident_id_check_digit(value[:17]) != value[17]:
            raise InvalidIdNumber("resident ID check digit does not match")
        return value
    if _PASSPORT.match(value) and not value.isdigit():
        return value
    raise InvalidIdNumber("not an 18-digit resident ID nor a passport number")


def normalise_phone(raw: str) -> str:
    value = re.sub(r"[\s-]", "", raw.strip())
    if value.startswith("+86"):
        value = value[3:]
    if not _MOBILE.match(value):
        raise ValueError("phone is not an 11-digit mainland mobile number")
    return value


def mask_id_number(value: str) -> str:
    """4201**********1234 for resident IDs; first and last two of a passport."""
    if len(value) == 18:
        return value[:4] + "*" * 10 + value[-4:]
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def mask_phone(value: str) -> str:
    if len(value) == 11:
        return value[:3] + "****" + value[-4:]
    return "*" * max(0, len(value) - 2) + value[-2:]


def mask_name(name: str) -> str:
    """张*三 / 张* for Chinese names; J*** S**** for Latin ones."""
    name = name.strip()
    if not name:
        return ""
    if " " in name:
        return " ".join(part[0] + "*" * (len(part) - 1) for part in name.split())
    if len(name) == 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
