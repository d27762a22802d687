"""Configuration from environment variables (prefix `CREDIT_`), checked once at start-up.

A wrong value stops the service before it accepts a request, with the variable named, rather
than failing later in the middle of a publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scoring.shipped import RULES_DIR, known_scale


def _default_database() -> Path:
    """var/credit-rating.db in the checkout this runs from, or in the working directory when
    the package is installed."""
    checkout = RULES_DIR.parent
    top = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return top / "var" / "credit-rating.db"


DEFAULT_DATABASE = _default_database()


@dataclass(frozen=True)
class SharingConfig:
    """Who shares with the city platform, and how many records go in one batch."""

    batch_size: int = 500
    district_code: str = "120111"
    bureau_name: str = "天津市西青区教育局"
    bureau_uscc: str = "11120111MB1893104B"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_", extra="forbid", frozen=True)

    database_url: str = f"sqlite:///{DEFAULT_DATABASE}"
    rules_dir: Path = RULES_DIR
    scale: str | None = None  # a scale of the rules (`four`, `five`); None: the rules' default
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    district_code: Annotated[str, Field(pattern=r"^\d{6}$")] = SharingConfig.district_code
    bureau_name: str = SharingConfig.bureau_name
    bureau_uscc: str = SharingConfig.bureau_uscc
    # The city's "双随机、一公开" platform (docs/sharing.md has the wire format).
    platform_url: str | None = None
    platform_secret: SecretStr | None = None
    platform_batch: Annotated[int, Field(ge=1, le=100_000)] = SharingConfig.batch_size
    platform_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    platform_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    platform_backoff: Annotated[float, Field(ge=0, le=600)] = 1.0

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql")):
            raise ValueError("CREDIT_DATABASE_URL must be sqlite:///PATH or postgresql://…")
        return url

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, scale: str | None, info: ValidationInfo) -> str | None:
        return None if scale is None else known_scale(scale, info.data.get("rules_dir", RULES_DIR))

    @property
    def sharing(self) -> SharingConfig:
        return SharingConfig(
            batch_size=self.platform_batch,
            district_code=self.district_code,
            bureau_name=self.bureau_name,
            bureau_uscc=self.bureau_uscc,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
