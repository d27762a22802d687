"""The `credit-rating` command line: commands (`commands`) and how their results look (`render`)."""

from service.cli.commands import app

__all__ = ["app"]
