"""`python -m service.cli …`: the same as the `credit-rating` command."""

from service.cli.commands import app

app()
