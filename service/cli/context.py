"""What commands that use the database share: the configuration and a migrated engine.

Apart from `commands` so that commands in their own modules (`calibrate`, `compare`) use the
same checks without importing the module that registers them.
"""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy import Engine

from service.core.database import make_engine
from service.core.errors import NotConfigured
from service.core.migrate import upgrade
from service.core.settings import Settings


def settings() -> Settings:
    """The CREDIT_* configuration, or NotConfigured naming each bad variable (never its value:
    the database URL holds a password, the platform a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_input=False, include_url=False, include_context=False):
            name = "CREDIT_" + "_".join(str(part) for part in e["loc"]).upper()
            message = e["msg"].removeprefix("Value error, ")
            problems.append(f"  {message if message.startswith(name) else f'{name}: {message}'}")
        raise NotConfigured(
            "invalid configuration (CREDIT_* environment variables):\n" + "\n".join(problems)
        ) from None


def engine(settings: Settings) -> Engine:
    """The configured database, migrated to the newest schema."""
    made = make_engine(settings.database_url)
    upgrade(made)
    return made
