"""Configuration from environment variables (prefix `CREDIT_`), checked once at start-up.

A wrong value stops the service before it accepts a request, with the variable named, rather
than failing later in the middle of a publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from limits import parse_many
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from scoring.draw import Weight, parse_weights
from scoring.limits import MiB, ReadLimits
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
    # No value in an error: the database URL holds a password, the platform a secret.
    model_config = SettingsConfigDict(
        env_prefix="CREDIT_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

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
    platform_max_wait: Annotated[float, Field(ge=0, le=86_400)] = 300.0  # caps Retry-After
    # Limits: what one request or file may cost (docs/security.md says what each defends).
    max_body_bytes: Annotated[int, Field(ge=1024)] = 16 * MiB  # a JSON request body
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 256 * MiB  # all files of one import
    max_upload_files: Annotated[int, Field(ge=1, le=1000)] = 20
    max_rows: Annotated[int, Field(ge=1)] = 5_000_000  # data rows per uploaded file
    max_workbook_bytes: Annotated[int, Field(ge=1024)] = ReadLimits.max_workbook_bytes
    max_decoded_bytes: Annotated[int, Field(ge=1024)] = 1024 * MiB  # a Parquet file, decoded
    max_columns: Annotated[int, Field(ge=1, le=16_384)] = ReadLimits.max_columns
    max_json_depth: Annotated[int, Field(ge=2, le=1000)] = ReadLimits.max_json_depth
    max_rule_values: Annotated[int, Field(ge=100)] = 10_000  # dated values in candidate rules
    request_timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0  # seconds per request
    anonymous_rate: str = "600/minute"  # per client address, `limits` notation
    failed_key_rate: str = "30/minute"  # wrong API keys per client address
    # Tamper evidence (docs/operations.md): the key that signs published snapshots, and the
    # file outside the database where each publication's chain head is recorded.
    signing_key: Path | None = None
    anchor_file: Path | None = None
    # A directory written by `credit-rating calibrate --out`: ratings then carry their
    # calibrated risk (checked at start-up against its metadata and the rules in force).
    calibration_dir: Path | None = None
    # The random-inspection draw (docs/draws.md): per-grade weights, `all` = always drawn.
    draw_weights: str = "A=0.5,B=0.75,C=1,D=2,E=all"
    # The publicity period (公示期) each publication opens, and where objections go
    # (docs/objections.md); no contact given: the bureau's name.
    publicity_days: Annotated[int, Field(ge=1, le=366)] = 7
    objection_contact: Annotated[str, Field(max_length=500)] | None = None
    # Published years kept in memory to answer lookups and whole years without a query
    # (service.api.published): at most this many bytes, least recently used dropped; 0: none.
    published_memory: Annotated[int, Field(ge=0)] = 512 * MiB

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(("sqlite:///", "postgresql")):
            raise ValueError("CREDIT_DATABASE_URL must be sqlite:///PATH or postgresql://…")
        try:  # never the URL itself in the message: it may hold a password
            host = make_url(url).host or ""
        except (ArgumentError, ValueError):
            raise ValueError(
                "CREDIT_DATABASE_URL is not a valid URL (postgresql://USER:PASSWORD@HOST:PORT/DB)"
            ) from None
        if "@" in host:  # the rest of a password would be shown as the host
            raise ValueError("CREDIT_DATABASE_URL: write an @ in the password as %40")
        return url

    @field_validator("anonymous_rate", "failed_key_rate")
    @classmethod
    def _rate(cls, rate: str) -> str:
        try:
            parse_many(rate)
        except ValueError:
            raise ValueError("a rate such as 600/minute (several joined by ;)") from None
        return rate

    @field_validator("draw_weights")
    @classmethod
    def _draw_weights(cls, text: str) -> str:
        parse_weights(text)  # DrawError is a ValueError: named as CREDIT_DRAW_WEIGHTS
        return text

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, scale: str | None, info: ValidationInfo) -> str | None:
        return None if scale is None else known_scale(scale, info.data.get("rules_dir", RULES_DIR))

    @property
    def database_shown(self) -> str:
        """The database URL as it may be printed: its password masked."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def read_limits(self) -> ReadLimits:
        """The limits for reading uploaded files."""
        return ReadLimits(
            max_rows=self.max_rows,
            max_workbook_bytes=self.max_workbook_bytes,
            max_decoded_bytes=self.max_decoded_bytes,
            max_columns=self.max_columns,
            max_json_depth=self.max_json_depth,
        )

    @property
    def sharing(self) -> SharingConfig:
        return SharingConfig(
            batch_size=self.platform_batch,
            district_code=self.district_code,
            bureau_name=self.bureau_name,
            bureau_uscc=self.bureau_uscc,
        )

    @property
    def draw_weight_map(self) -> dict[str, Weight]:
        """CREDIT_DRAW_WEIGHTS as {grade: Fraction or "all"}."""
        return parse_weights(self.draw_weights)

    @property
    def objection_contact_shown(self) -> str:
        """Where objections go: CREDIT_OBJECTION_CONTACT, else the bureau's name."""
        return self.objection_contact or self.bureau_name

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
