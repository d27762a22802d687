"""The bureau's calendar is Beijing's: "today" in a check is the Beijing date, which is a day
ahead of UTC's before 08:00 in Beijing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from scoring.errors import InputError
from scoring.shipped import SAMPLE_INSTITUTIONS, load_rules
from service.core.clock import beijing_date
from service.records import importing

EARLY_MORNING = datetime(2024, 5, 9, 23, 0, tzinfo=UTC)  # 2024-05-10 07:00 in Beijing


def test_the_beijing_date_is_a_day_ahead_before_eight() -> None:
    assert beijing_date(EARLY_MORNING) == date(2024, 5, 10)
    assert beijing_date(datetime(2024, 5, 10, 0, 0, tzinfo=UTC)) == date(2024, 5, 10)
    assert beijing_date(datetime(2024, 5, 10, 16, 0, tzinfo=UTC)) == date(2024, 5, 11)


def test_an_inspection_of_this_morning_is_not_in_the_future(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "now", lambda: EARLY_MORNING)
    register = tmp_path / "inspections.csv"
    register.write_text(
        "task_id,uscc,inspected_on,result\n西青教查〔2024〕1号,52120111MJ0627485A,2024-05-10,\n",
        encoding="utf-8",
    )
    done = importing.import_files(
        engine, [SAMPLE_INSTITUTIONS, register], rules=load_rules(), by="tests"
    )
    assert done.inspections_added == 1
    tomorrow = tmp_path / "tomorrow.csv"
    tomorrow.write_text(register.read_text(encoding="utf-8").replace("05-10", "05-11"), "utf-8")
    with pytest.raises(InputError, match="2024-05-10"):  # the Beijing date, named as today
        importing.import_files(engine, [SAMPLE_INSTITUTIONS, tomorrow], rules=load_rules(), by="t")
