"""Configuration from environment variables (prefix `CREDIT_`), checked once at start-up.

A wrong value stops the service before it accepts a request, with the variable named, rather
than failing later in the middle of a publish.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.loading import PROJECT_ROOT, RULES_DIR

DEFAULT_DATABASE = PROJECT_ROOT / "var" / "credit-rating.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_", extra="forbid", frozen=True)

    database_url: str = f"sqlite:///{DEFAULT_DATABASE}"
    rules_dir: Path = RULES_DIR
    scale: Annotated[str, Field(pattern=r"^(four|five)$")] = "four"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    load_sample: bool = False  # load data/ into an empty database on start (local use)
    district_code: Annotated[str, Field(pattern=r"^\d{6}$")] = "120111"
    bureau_name: str = "天津市西青区教育局"
    bureau_uscc: str = "11120111MB1893104B"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql")):
            raise ValueError("CREDIT_DATABASE_URL must be sqlite:///PATH or postgresql://…")
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
