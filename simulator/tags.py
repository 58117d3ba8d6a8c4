"""User tags (/cgi-bin/tags/*), which pick conditional menus."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import ApiError
from simulator.users import User

MAX_TAGS = 100
MAX_TAGS_PER_USER = 20
MAX_NAME_BYTES = 30
FIRST_ID = 100  # 0–2 are WeChat's own (blacklist, starred…)


@dataclass(frozen=True, slots=True)
class Tag:
    id: int
    name: str


class TagBook:
    def __init__(self) -> None:
        self._tags: dict[int, Tag] = {}
        self._next = FIRST_ID

    def create(self, name: object) -> Tag:
        if not isinstance(name, str) or not name.strip():
            raise ApiError(45157, "tag.name must be a non-empty string")
        if len(name.encode()) > MAX_NAME_BYTES:
            raise ApiError(45158, f"tag name {name!r} is over {MAX_NAME_BYTES} bytes")
        if any(tag.name == name for tag in self._tags.values()):
            raise ApiError(45157, f"tag name {name!r} already exists")
        if len(self._tags) >= MAX_TAGS:
            raise ApiError(45056)
        tag = Tag(self._next, name)
        self._tags[tag.id] = tag
        self._next += 1
        return tag

    def require(self, tag_id: object) -> Tag:
        try:
            tag = self._tags.get(int(str(tag_id)))
        except ValueError:
            tag = None
        if tag is None:
            raise ApiError(45159, f"tag id {tag_id!r}")
        return tag

    def all(self) -> list[Tag]:
        return list(self._tags.values())

    @staticmethod
    def attach(tag: Tag, users: list[User]) -> None:
        if any(len(u.tags | {tag.id}) > MAX_TAGS_PER_USER for u in users):
            raise ApiError(45059)
        for user in users:
            user.tags.add(tag.id)

    @staticmethod
    def detach(tag: Tag, users: list[User]) -> None:
        for user in users:
            user.tags.discard(tag.id)
