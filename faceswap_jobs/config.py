"""Settings: the only place that reads the environment.

Every other module receives a `Settings` instance, so tests and embedded runs (the demo) can build
one explicitly and nothing reads `os.environ` behind their back.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_API_BASE_URL = "http://127.0.0.1:8700"
"""The local emulator's default address; the real service is https://api.acedata.cloud."""


class Settings(BaseSettings):
    """Configuration for producers, workers, the CLI and Flower (`FACESWAP_*` or `.env`)."""

    model_config = SettingsConfigDict(
        env_prefix="FACESWAP_", env_file=".env", extra="ignore", frozen=True
    )

    api_base_url: str = DEFAULT_API_BASE_URL
    api_token: SecretStr = SecretStr("emulator-token")
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="faceswap", pattern=r"^[A-Za-z0-9_.-]{1,40}$")

    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=150.0, gt=0)

    max_attempts: int = Field(default=8, ge=1, le=100)
    deadline_s: float = Field(default=3600.0, gt=0)
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_cap_s: float = Field(default=120.0, gt=0)
    retry_after_cap_s: float = Field(default=300.0, gt=0)
    max_countdown_s: float = Field(default=600.0, gt=0)

    soft_time_limit_s: float = Field(default=170.0, gt=0)
    time_limit_s: float = Field(default=190.0, gt=0)
    visibility_timeout_s: float = Field(default=3600.0, gt=0)
    result_ttl_s: float = Field(default=7 * 86400.0, gt=0)
    job_ttl_s: float = Field(default=30 * 86400.0, gt=0)

    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    worker_concurrency: int = Field(default=32, ge=1, le=5000)
    interactive_queue: str = "faceswap.interactive"
    bulk_queue: str = "faceswap.bulk"

    flower_host: str = "127.0.0.1"
    flower_port: int = Field(default=5555, ge=1, le=65535)
    flower_user: str = "admin"
    flower_password: SecretStr | None = None

    @model_validator(mode="after")
    def _time_limits_nest(self) -> Settings:
        """A stalled call must be killed before the broker hands its message to another worker."""
        chain = [
            ("read_timeout_s", self.read_timeout_s),
            ("soft_time_limit_s", self.soft_time_limit_s),
            ("time_limit_s", self.time_limit_s),
            ("visibility_timeout_s", self.visibility_timeout_s),
        ]
        for (low_name, low), (high_name, high) in itertools.pairwise(chain):
            if not low < high:
                raise ValueError(f"{low_name} ({low}) must be less than {high_name} ({high})")
        if not self.max_countdown_s < self.visibility_timeout_s:
            raise ValueError(
                f"max_countdown_s ({self.max_countdown_s}) must be less than "
                f"visibility_timeout_s ({self.visibility_timeout_s})"
            )
        if self.retry_after_cap_s > self.max_countdown_s:
            raise ValueError("retry_after_cap_s must not exceed max_countdown_s")
        if self.backoff_cap_s > self.max_countdown_s:
            raise ValueError("backoff_cap_s must not exceed max_countdown_s")
        return self

    @property
    def swap_url(self) -> str:
        return self.api_base_url.rstrip("/") + "/face/swap"
