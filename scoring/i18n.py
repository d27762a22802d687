"""Messages in the reader's language: Chinese by default, English with `CREDIT_LANG=en`.

Supervisors are Chinese civil servants: error reports, CLI help and CLI messages must reach
them in Chinese, while developers, logs and tests may want English. Every message a person
sees is written in English in the code, wrapped in `_()` (the gettext msgid, with `{name}`
placeholders filled by `.format()` after translation), and translated by the catalogue
`scoring/locale/zh_CN/LC_MESSAGES/credit_rating.po`, managed with Babel (docs/i18n.md).

This module sits at the lowest layer (it imports nothing of the project), so the scorer and
the service share one catalogue. The `.po` file is the only copy: it is compiled in memory
with Babel's own reader and writer the first time a language is used (a few milliseconds),
so no compiled `.mo` can fall out of step with it. Both ship inside the `scoring` package.

The language is read from `CREDIT_LANG` each time a message is translated: `en` (or any value
starting with `en`, e.g. `en_US`) means English; anything else, unset included, means
Chinese. Other locale variables (LANG, LC_ALL) are ignored on purpose: servers often run
with an English or C locale, and the language must not change with the machine. Texts built
once at import (Typer's help) take the language of the process when it starts.
"""

from __future__ import annotations

import gettext
import os
from functools import cache
from io import BytesIO
from pathlib import Path

ENVIRONMENT = "CREDIT_LANG"
"""The environment variable naming the language of messages."""

DOMAIN = "credit_rating"
"""The gettext domain: the catalogue's file name."""

LOCALE_DIR = Path(__file__).parent / "locale"
"""Where the catalogues are: `<LOCALE_DIR>/<language>/LC_MESSAGES/<DOMAIN>.po`."""

CHINESE = "zh_CN"
ENGLISH = "en"
LANGUAGES = (CHINESE, ENGLISH)
"""The languages spoken: Chinese (the default, from the catalogue) and English (the msgids)."""


def language() -> str:
    """The language of messages now: `en` when CREDIT_LANG starts with "en", else `zh_CN`."""
    chosen = os.environ.get(ENVIRONMENT, "").strip().lower()
    return ENGLISH if chosen.startswith("en") else CHINESE


def catalogue_path(lang: str = CHINESE) -> Path:
    """The `.po` file of a language."""
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The translations of `lang`, compiled from its `.po` once per process (English: none)."""
    if lang == ENGLISH:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo  # only when a catalogue is needed
    from babel.messages.pofile import read_po

    with catalogue_path(lang).open("rb") as handle:
        catalog = read_po(handle, locale=lang, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)  # a fuzzy entry is not a translation
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def _(message: str) -> str:
    """`message` (an English msgid) in the language of `CREDIT_LANG`."""
    return translations(language()).gettext(message)


def N_(message: str) -> str:
    """Mark `message` for the catalogue without translating it (a constant defined at import,
    translated with `_()` where it is shown)."""
    return message


def ngettext(singular: str, plural: str, count: int) -> str:
    """The singular or plural form for `count`, in the language of `CREDIT_LANG`."""
    return translations(language()).ngettext(singular, plural, count)
