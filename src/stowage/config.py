"""Settings from the environment (``STOWAGE_*``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stowage"


class Settings(BaseSettings):
    """All of Stowage's settings; every field can be set with ``STOWAGE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="STOWAGE_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    admin_token: str | None = None
    # First web UI admin; without a password one is generated, printed once and saved to <data dir>/admin-password.
    admin_email: str = "admin@localhost"
    admin_password: str | None = None
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # STS session length for assumed roles; AWS allows 900..43200 seconds.
    sts_duration_seconds: int = 3600
    # Test-only escape hatch: allow sessions shorter than AWS's 900 s minimum (emulators accept them).
    allow_short_sessions: bool = False
    # Refresh cached credentials this many seconds before they expire (botocore's advisory window).
    credential_refresh_seconds: int = 900
    validation_timeout_seconds: float = 30.0
    # A location's S3 URL may reach loopback/private/CGNAT addresses (on-premises storage); never metadata.
    allow_private_endpoints: bool = False
    revalidate_interval_minutes: int = 30
    revalidate_concurrency: int = 4
    sts_calls_per_second: float = 10.0
    scheduler_enabled: bool = True
    # How often the scheduler looks for due locations (seconds; tests use a few seconds).
    scheduler_tick_seconds: int = 60
    # How often agents are told to heartbeat; a cluster silent for three intervals shows as disconnected.
    agent_heartbeat_seconds: int = Field(default=30, ge=1, le=3600)
    # A running backup whose agent has not reported for this long is failed (the agent vanished).
    backup_lease_seconds: int = Field(default=120, ge=5, le=3600)
    # A backup its cluster's agent has not started within this long is failed (agent disconnected).
    backup_start_timeout_seconds: int = Field(default=3600, ge=10, le=7 * 86400)
    # Upper bound of deleting one backup's objects and snapshots; past it the backup is Failed with the reason.
    backup_delete_timeout_seconds: int = Field(default=600, ge=5, le=86400)
    # How often backups are synced from the buckets (found there, not recorded); 0 turns the periodic sync off.
    backup_sync_interval_minutes: float = Field(default=10, ge=0, le=10080)
    log_level: str = "INFO"
    # Server log lines: one JSON object each (for collectors) or text (for people at a terminal).
    log_format: Literal["json", "text"] = "json"

    @field_validator("sts_duration_seconds")
    @classmethod
    def _duration_in_range(cls, value: int) -> int:
        if value < 1 or value > 43200:
            raise ValueError("STOWAGE_STS_DURATION_SECONDS must be between 900 and 43200")
        return value

    @property
    def effective_sts_duration(self) -> int:
        """The session length actually asked of STS (AWS's minimum unless short sessions are allowed)."""
        if self.allow_short_sessions:
            return self.sts_duration_seconds
        return max(900, self.sts_duration_seconds)

    @property
    def effective_refresh_seconds(self) -> int:
        """The refresh window, never more than half of a session (short test sessions)."""
        return min(self.credential_refresh_seconds, self.effective_sts_duration // 2)

    @property
    def resolved_database_url(self) -> str:
        """The database URL: ``STOWAGE_DATABASE_URL`` or SQLite under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'stowage.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
