"""The account's users: who follows, their tags, and when customer-service pushes are allowed."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.clock import Clock
from simulator.errors import ApiError


@dataclass(frozen=True, slots=True)
class KfLimits:
    """WeChat's rules since 2023 for customer-service messages (None: no quota)."""

    message_window: float = 48 * 3600
    message_quota: int | None = 5
    event_window: float = 60
    event_quota: int | None = 3


@dataclass(slots=True)
class Window:
    """When the user last wrote or tapped, and how many pushes each of those has paid for."""

    message_at: float | None = None
    message_sent: int = 0
    event_at: float | None = None
    event_sent: int = 0

    def on_message(self, now: float) -> None:
        self.message_at, self.message_sent = now, 0

    def on_event(self, now: float) -> None:
        self.event_at, self.event_sent = now, 0

    def spend(self, now: float, limits: KfLimits) -> None:
        """Account for one customer-service message, or raise 45015/45047 as WeChat would."""
        event_open = self.event_at is not None and now - self.event_at < limits.event_window
        message_open = self.message_at is not None and now - self.message_at < limits.message_window
        if not (event_open or message_open):
            raise ApiError(45015)
        if event_open and (limits.event_quota is None or self.event_sent < limits.event_quota):
            self.event_sent += 1
            return
        if message_open and (
            limits.message_quota is None or self.message_sent < limits.message_quota
        ):
            self.message_sent += 1
            return
        raise ApiError(45047)

    @property
    def last_interaction(self) -> float | None:
        times = [t for t in (self.message_at, self.event_at) if t is not None]
        return max(times) if times else None


@dataclass(slots=True)
class User:
    openid: str
    following: bool = False
    subscribe_time: int = 0
    subscribe_scene: str = "ADD_SCENE_OTHERS"
    qr_scene: int = 0
    qr_scene_str: str = ""
    language: str = "zh_CN"
    tags: set[int] = field(default_factory=set)
    window: Window = field(default_factory=Window)

    def info(self) -> dict[str, object]:
        """The body of /cgi-bin/user/info (no nickname or avatar: WeChat dropped them in 2021)."""
        if not self.following:
            return {"subscribe": 0, "openid": self.openid}
        return {
            "subscribe": 1,
            "openid": self.openid,
            "language": self.language,
            "subscribe_time": self.subscribe_time,
            "remark": "",
            "groupid": 0,
            "tagid_list": sorted(self.tags),
            "subscribe_scene": self.subscribe_scene,
            "qr_scene": self.qr_scene,
            "qr_scene_str": self.qr_scene_str,
        }


class UserBook:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._users: dict[str, User] = {}
        self.kf_limits = KfLimits()

    def get(self, openid: str) -> User | None:
        return self._users.get(openid)

    def require(self, openid: object) -> User:
        user = self._users.get(openid) if isinstance(openid, str) else None
        if user is None:
            raise ApiError(40003, f"openid {openid!r}")
        return user

    def add(self, openid: str, *, following: bool) -> User:
        """Register a user once; a persona is a follower already (campus asked everyone to)."""
        user = self._users.get(openid)
        if user is None:
            user = User(openid)
            self._users[openid] = user
            if following:
                self.follow(user, scene="ADD_SCENE_OTHERS")
        return user

    def follow(self, user: User, *, scene: str, qr_scene_str: str = "") -> None:
        user.following = True
        user.subscribe_time = int(self._clock.time())
        user.subscribe_scene = scene
        user.qr_scene_str = qr_scene_str
        user.qr_scene = int(qr_scene_str) if qr_scene_str.isdigit() else 0

    def unfollow(self, user: User) -> None:
        user.following = False
        user.tags.clear()

    def all(self) -> list[User]:
        return list(self._users.values())
