"""`credit-rating compute` and `publish`: a year from files to the public result without an HTTP
client, the same snapshots as the service's routes make (signed, chained, queued)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS
from service.cli import app
from service.cli.context import engine, settings
from service.core.database import reading
from service.ratings import integrity, snapshots
from service.ratings.publicity import publicity


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_import_compute_publish_and_correct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDIT_DATABASE_URL", f"sqlite:///{tmp_path / 'credit.sqlite'}")
    assert run("import", str(SAMPLE_INSTITUTIONS), str(SAMPLE_FINDINGS))[0] == 0
    code, out, _ = run("publish", "--year", "2023")
    assert code == 1  # nothing computed yet
    code, out, _ = run("compute", "--year", "2023")
    assert code == 0 and "第1版草稿" in out
    code, out, _ = run("publish", "--year", "2023")
    assert code == 0 and "第1版已公示" in out
    with reading(engine(settings())) as conn:
        first = snapshots.published(conn, year=2023)
        assert first is not None and first.status == "published" and first.chain_hash in out
        period = publicity(first, settings())
        assert period is not None and f"公示期至 {period.ends_on.isoformat()}" in out
        assert integrity.check(conn).problems == []

    code, _, err = run("publish", "--year", "2023")
    assert code == 1 and "already published" in err
    run("compute", "--year", "2023")
    code, _, err = run("publish", "--year", "2023")
    assert code == 1 and "reason" in err  # a correction needs one
    code, out, _ = run("publish", "--year", "2023", "--reason", "复核更正")
    assert code == 0 and "第2版已公示" in out
    with reading(engine(settings())) as conn:
        second = snapshots.published(conn, year=2023)
        assert second is not None and (second.revision, second.supersedes) == (2, 1)
        assert second.reason == "复核更正"
