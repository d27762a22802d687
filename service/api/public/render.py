"""The public page and its error pages as HTML, from the Jinja2 templates beside this module.

Autoescaping is on for every template: institution names and correction reasons are text a
supervisor typed, and must never become markup on a public page.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from service.api.public.view import ORDERS, SORTS, View
from service.core.clock import BEIJING, now

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STYLESHEET = "/public/static/public.css"


def day(moment: datetime | date) -> str:
    """`2024年3月5日`: a moment's day in Beijing time, or a calendar day as it is."""
    local = moment.astimezone(BEIJING) if isinstance(moment, datetime) else moment
    return f"{local.year}年{local.month}月{local.day}日"


def minute(moment: datetime) -> str:
    """`2024年3月5日 09:30`, in Beijing time."""
    return f"{day(moment)} {moment.astimezone(BEIJING):%H:%M}"


ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["day"] = day
ENV.filters["minute"] = minute
COLUMNS = [(key, SORTS[key]) for key in ("name", "uscc", "grade")]
"""The table's sortable columns, in the order they are shown."""
ENV.globals.update(stylesheet=STYLESHEET, sorts=SORTS, orders=ORDERS, columns=COLUMNS, now=now)


def page(view: View) -> str:
    return ENV.get_template("page.html").render(v=view, q=view.query)


def error(status: int, title: str, detail: str) -> str:
    return ENV.get_template("error.html").render(status=status, title=title, detail=detail)
