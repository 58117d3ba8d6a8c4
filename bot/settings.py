"""Settings from the environment (prefix HEALTHBOT_) and an optional .env file."""

from __future__ import annotations

import base64
import binascii
from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HEALTHBOT_", env_file=".env", extra="ignore", frozen=True
    )

    wechat_token: str = "healthbot"  # noqa: S105 (demo default; serve refuses defaults)
    wechat_appid: str = "wx0000000000000000"
    wechat_secret: str = "demo-secret"  # noqa: S105
    wechat_aes_key: str | None = None
    wechat_api_base: str = "https://api.weixin.qq.com"
    database_url: str = "sqlite+aiosqlite:///./healthbot.db"
    redis_url: str | None = None
    timezone: str = "Asia/Shanghai"
    rules_file: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    # Key for personal data at rest and for keyed lookups; must be set in production.
    data_key: str = "change-me-in-production"

    # `serve` refuses the demo defaults of the secrets unless this is set (local trials).
    allow_insecure_defaults: bool = False
    default_locale: str = "zh_CN"
    conversation_ttl: int = Field(default=30 * 60, ge=60)
    rate_limit_per_minute: int = Field(default=30, ge=1)
    guard_rate_limit_per_minute: int = Field(default=600, ge=1)
    bind_failures_per_hour: int = Field(default=5, ge=1)
    reply_deadline: float = Field(default=4.5, gt=0, le=4.8)
    timestamp_tolerance: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    dedup_ttl: int = Field(default=300, ge=10)
    # Access (issue 7): how long a pass code is valid, and a guard's shift on duty.
    pass_code_ttl: int = Field(default=600, ge=60, le=86400)
    guard_shift_hours: float = Field(default=12, gt=0, le=24)

    # Notifications (scheduler/dispatcher.py). TEMPLATE_IDS is a JSON object of push kind →
    # WeChat template id, for users outside the 48-hour customer-service window.
    template_ids: dict[str, str] = Field(default_factory=dict)
    outbox_concurrency: int = Field(default=32, ge=1, le=512)
    outbox_claim_seconds: float = Field(default=60, ge=5)
    outbox_max_attempts: int = Field(default=12, ge=1)
    outbox_retention_days: int = Field(default=30, ge=1)
    # The scheduler's leader lock: a new leader takes over at most lock + lock/4 s after the
    # old one died (renewed every lock/4 s).
    scheduler_lock_seconds: float = Field(default=20, gt=0, le=24)
    # serve, scheduler, demo: uvloop when installed (auto), required (uvloop), or asyncio's.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    @field_validator("wechat_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if len(value) != 43:
            raise ValueError(f"WECHAT_AES_KEY must be 43 characters, got {len(value)}")
        try:
            key = base64.b64decode(value + "=", validate=True)
        except binascii.Error as exc:
            raise ValueError("WECHAT_AES_KEY is not base64") from exc
        if len(key) != 32:
            raise ValueError("WECHAT_AES_KEY does not decode to 32 bytes")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        if value not in ("zh_CN", "en"):
            raise ValueError(f"unknown locale {value!r}; use zh_CN or en")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        return value

    @model_validator(mode="after")
    def _replies_kept_through_the_replay_window(self) -> Settings:
        # A request captured in transit is accepted again until its timestamp is
        # TIMESTAMP_TOLERANCE old; the stored reply must outlive that, or the replay runs anew.
        if self.dedup_ttl < self.timestamp_tolerance:
            raise ValueError(
                f"DEDUP_TTL ({self.dedup_ttl} s) must be at least TIMESTAMP_TOLERANCE "
                f"({self.timestamp_tolerance} s): a replayed request would be processed again"
            )
        return self

    def production_problems(self) -> list[str]:
        """Defaults that are fine for the demo and tests but must never reach production."""
        defaults = Settings.model_fields
        problems = []
        for name in ("wechat_token", "wechat_secret", "data_key"):
            if getattr(self, name) == defaults[name].default:
                problems.append(f"HEALTHBOT_{name.upper()} is still the default")
        if self.wechat_appid == defaults["wechat_appid"].default:
            problems.append("HEALTHBOT_WECHAT_APPID is still the default")
        return problems

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
