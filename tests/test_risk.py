"""The calibrated risk in the service (CREDIT_CALIBRATION_DIR): an artifact is refused at
start-up when it was altered or fitted under other rules; a valid one adds the risk and its
interval to full ratings, from the stored score; without one the fields are null.

The artifact is made once by `credit-rating calibrate --demo` (a small synthetic district)."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from service.api.app import create_app
from service.cli import app as cli
from service.core.settings import Settings
from service.ratings.risk import ARTIFACT, METADATA, CalibrationRefused
from tests.conftest import Keys

YEAR = 2023
RISK_FIELDS = ("risk", "risk_lower", "risk_upper")


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calibration")
    args = ["calibrate", "--demo", "--years", "2023-2026", "--demo-institutions", "300"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    return out


def copy(calibration: Path, tmp_path: Path) -> Path:
    target = tmp_path / "calibration"
    shutil.copytree(calibration, target)
    return target


def test_an_altered_artifact_is_refused_before_it_is_loaded(
    calibration: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    altered = copy(calibration, tmp_path)
    content = bytearray((altered / ARTIFACT).read_bytes())
    content[len(content) // 2] ^= 0xFF
    (altered / ARTIFACT).write_bytes(bytes(content))

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an unchecked artifact was unpickled")

    monkeypatch.setattr("joblib.load", never)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", calibration_dir=altered)
    with pytest.raises(CalibrationRefused, match="does not match its metadata"):
        create_app(settings)


def test_an_artifact_fitted_under_other_rules_is_refused(calibration: Path, tmp_path: Path) -> None:
    # The candidate rules the calibration wrote are other rules for its last year.
    candidate = calibration / "rules"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        rules_dir=candidate,
        calibration_dir=calibration,
    )
    with pytest.raises(CalibrationRefused, match="fitted under other rules"):
        create_app(settings)
    # Its metadata edited to claim the rules in force does not help: the sha256 still holds,
    # but a hash that is not that of the rules is refused just the same.
    other = copy(calibration, tmp_path)
    metadata = json.loads((other / METADATA).read_text(encoding="utf-8"))
    metadata["rules_hash"] = "0" * 64
    (other / METADATA).write_text(json.dumps(metadata), encoding="utf-8")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", calibration_dir=other)
    with pytest.raises(CalibrationRefused, match="fitted under other rules"):
        create_app(settings)


def published(client: TestClient, keys: Keys) -> None:
    supervisor = keys.header("supervisor")
    assert client.post(f"/v1/ratings/{YEAR}", headers=supervisor).status_code == 201
    assert client.post(f"/v1/ratings/{YEAR}/publish", headers=supervisor).status_code == 200


@pytest.fixture
def calibrated(
    database_url: str, loaded: Engine, api_keys: Keys, calibration: Path
) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, calibration_dir=calibration)
    with TestClient(create_app(settings)) as client:
        published(client, api_keys)
        yield client


def test_a_published_rating_carries_its_risk_within_its_interval(
    calibrated: TestClient, api_keys: Keys
) -> None:
    supervisor = api_keys.header("supervisor")
    answer = calibrated.get(f"/v1/ratings/{YEAR}", headers=supervisor)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["institutions"]
    assert len(rows) > 1
    for row in rows:
        assert 0 <= row["risk_lower"] <= row["risk"] <= row["risk_upper"] <= 1, row
    by_score = sorted(rows, key=lambda r: r["score"])
    risks = [r["risk"] for r in by_score]
    assert all(a >= b for a, b in itertools.pairwise(risks))  # never up with score
    assert by_score[0]["score"] < by_score[-1]["score"]
    assert risks[0] > risks[-1]  # and down over the district's range of scores

    # The same for one institution, and again (from the response cache): the same answer.
    first = rows[0]
    for _ in range(2):
        one = calibrated.get(f"/v1/ratings/{YEAR}/{first['uscc']}", headers=supervisor)
        assert one.status_code == 200, one.text
        rating = one.json()["rating"]
        assert {f: rating[f] for f in RISK_FIELDS} == {f: first[f] for f in RISK_FIELDS}
        assert rating["grade"] == first["grade"]

    # The public sees grades only.
    public = calibrated.get(f"/v1/ratings/{YEAR}").json()["institutions"]
    assert not any(f in row for row in public for f in RISK_FIELDS)


def test_without_a_calibrator_the_risk_is_null(
    database_url: str, loaded: Engine, api_keys: Keys
) -> None:
    supervisor = api_keys.header("supervisor")
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        published(client, api_keys)
        rows = client.get(f"/v1/ratings/{YEAR}", headers=supervisor).json()["institutions"]
        one = client.get(f"/v1/ratings/{YEAR}/{rows[0]['uscc']}", headers=supervisor).json()
    assert rows and all(row[f] is None for row in rows for f in RISK_FIELDS)
    assert all(one["rating"][f] is None for f in RISK_FIELDS)


def test_serve_refuses_an_altered_artifact_with_a_message(
    calibration: Path, tmp_path: Path
) -> None:
    altered = copy(calibration, tmp_path)
    (altered / ARTIFACT).write_bytes((altered / ARTIFACT).read_bytes() + b"\0")
    env = {
        "CREDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
        "CREDIT_CALIBRATION_DIR": str(altered),
    }
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 1
    assert "error:" in result.stderr and "does not match its metadata" in result.stderr
