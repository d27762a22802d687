"""`credit-rating calibrate`: the report, its determinism, files against --demo, --out and the
candidate rules, and bad inputs. In-process (CliRunner); a small synthetic district."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from scoring.calibration import CalibrationError
from scoring.calibration_report import calibrate, parse_years
from scoring.engine import rate
from scoring.history import SYNTHETIC_NOTICE, synthetic_history
from scoring.input_files import read_inputs
from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS, load_rules
from service.cli import app

YEARS = "2023-2026"
SEED = 11
N = 2_000
KEYS = {
    "auc",
    "ks",
    "brier",
    "brier_baseline",
    "reliability",
    "grade_rates",
    "psi",
    "weights",
    "cutoffs",
    "synthetic",
    "notice",
}


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["calibrate", *args])


def report_of(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    return report_of(
        run("--demo", "--demo-institutions", str(N), "--seed", str(SEED), "--years", YEARS,
            "--format", "json")
    )  # fmt: skip


def test_demo_reports_every_key_and_beats_the_base_rate(demo: dict[str, Any]) -> None:
    assert demo.keys() >= KEYS
    assert demo["synthetic"] is True and demo["notice"] == SYNTHETIC_NOTICE
    assert demo["training_years"] == [2023, 2024] and demo["held_out_year"] == 2025
    assert demo["brier"] < demo["brier_baseline"]
    assert 0.5 < demo["auc"] <= 1 and 0 < demo["ks"] <= 1
    assert [(p["from"], p["to"]) for p in demo["psi"]] == [(2023, 2024), (2024, 2025), (2025, 2026)]
    assert all(p["band"] in ("stable", "shifting", "shifted") for p in demo["psi"])
    assert [g["grade"] for g in demo["grade_rates"]] == ["A", "B", "C", "D"]
    assert all(g["lower"] <= (g["rate"] or 0) <= g["upper"] for g in demo["grade_rates"])
    weights = demo["weights"]
    assert len(weights) == 28 and all(v >= 0 for v in weights.values())
    assert sum(weights.values()) == 1000
    cutoffs = demo["cutoffs"]
    assert cutoffs[0]["max"] == 1000 and cutoffs[-1]["min"] == 0
    for upper, lower in itertools.pairwise(cutoffs):
        assert lower["max"] == upper["min"] - 1  # no gap, no overlap
        assert lower["rate"] > upper["rate"]  # rates rise from A down


def test_the_same_seed_gives_the_same_proposals(demo: dict[str, Any]) -> None:
    again = report_of(
        run("--demo", "--demo-institutions", str(N), "--seed", str(SEED), "--years", YEARS,
            "--format", "json")
    )  # fmt: skip
    assert again["weights"] == demo["weights"]
    assert again["cutoffs"] == demo["cutoffs"]


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The --demo district (same size and seed) written as the usual input files."""
    folder = tmp_path_factory.mktemp("history")
    # the day --demo generates up to (a year not over yet ends today)
    today = min(dt.date.today(), dt.date(2026, 12, 31))
    history = synthetic_history(N, (2023, 2024, 2025, 2026), seed=SEED, today=today)
    institutions, findings = folder / "institutions.csv", folder / "findings.csv"
    history.institutions.to_csv(institutions, index=False)
    history.findings.assign(occurred_on=history.findings["occurred_on"].dt.date).to_csv(
        findings, index=False
    )
    return institutions, findings


def without_synthetic(report: dict[str, Any]) -> dict[str, Any]:
    """Files and databases cannot say they are synthetic; all else must match the demo."""
    return {k: v for k, v in report.items() if k not in ("synthetic", "notice")}


def test_files_from_the_same_history_give_the_demo_report(
    demo: dict[str, Any], demo_files: tuple[Path, Path]
) -> None:
    institutions, findings = demo_files
    from_files = report_of(
        run("--institutions", str(institutions), "--findings", str(findings), "--seed",
            str(SEED), "--years", YEARS, "--format", "json")
    )  # fmt: skip
    assert from_files["synthetic"] is False and "notice" not in from_files
    assert without_synthetic(from_files) == without_synthetic(demo)


def test_the_stored_records_give_the_demo_report(
    demo: dict[str, Any], demo_files: tuple[Path, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("CREDIT_DATABASE_URL", f"sqlite:///{tmp_path / 'credit.sqlite'}")
    imported = CliRunner().invoke(app, ["import", *map(str, demo_files)])
    assert imported.exit_code == 0, imported.stderr
    stored = report_of(run("--stored", "--seed", str(SEED), "--years", YEARS, "--format", "json"))
    assert stored["synthetic"] is False
    assert without_synthetic(stored) == without_synthetic(demo)
    both = run("--stored", "--demo", "--years", YEARS)
    assert both.exit_code == 1 and "choose one of" in both.stderr


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calibrated")
    made = run("--demo", "--demo-institutions", "1000", "--seed", "2", "--years", YEARS,
               "--out", str(out), "--format", "json")  # fmt: skip
    assert made.exit_code == 0, made.stderr
    return out / "rules"


def test_compare_lists_who_would_change_grade_under_the_candidate(
    candidate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDIT_DATABASE_URL", f"sqlite:///{tmp_path / 'credit.sqlite'}")
    # expected, straight from the engine: the candidate's values as of the day they start
    proposed_rules = load_rules(candidate)
    assert proposed_rules.last_change_on == dt.date(2027, 1, 1)
    inst, found = read_inputs(SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, rules=load_rules())
    now = rate(inst, found, load_rules().in_force(2024))
    then = rate(inst, found, proposed_rules.in_force(2024, as_of=dt.date(2027, 1, 1)))
    moved = {
        u: (a, b)
        for u, a, b in zip(now["uscc"], now["grade"], then["grade"], strict=True)
        if a != b
    }
    assert moved, "the demo candidate should move someone in the sample district"

    listed = CliRunner().invoke(
        app, ["compare", "--rules", str(candidate), "--year", "2024", "--format", "json"]
    )
    assert listed.exit_code == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["proposed"]["as_of"] == "2027-01-01"
    assert report["changes"] == len(moved) and report["institutions_rated"] == len(now)
    assert {r["uscc"]: (r["grade"], r["proposed_grade"]) for r in report["institutions"]} == moved
    assert sum(n for row in report["moves"].values() for n in row.values()) == len(now)
    for old, new in moved.values():
        assert report["moves"][old][new] >= 1

    # applied as of its own date (31 December 2024), the candidate is the rules in force
    same = CliRunner().invoke(app, ["compare", "--rules", str(candidate), "--year", "2024",
                                    "--as-of", "2024-12-31", "--format", "json"])  # fmt: skip
    assert json.loads(same.stdout)["changes"] == 0

    # the records in the database, once imported, give the same list
    assert (
        CliRunner()
        .invoke(app, ["import", str(SAMPLE_INSTITUTIONS), str(SAMPLE_FINDINGS)])
        .exit_code
        == 0
    )
    stored = CliRunner().invoke(
        app,
        ["compare", "--rules", str(candidate), "--year", "2024", "--stored", "--format", "json"],
    )
    assert json.loads(stored.stdout)["institutions"] == report["institutions"]

    table = CliRunner().invoke(app, ["compare", "--rules", str(candidate), "--year", "2024"])
    assert table.exit_code == 0 and all(u in table.stdout for u in moved)
    assert f"等级变化 {len(moved)} 家" in table.stdout


def test_out_writes_the_artifact_metadata_and_candidate_rules(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("--demo", "--demo-institutions", "1000", "--seed", "2", "--years", YEARS,
                 "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert SYNTHETIC_NOTICE[:20] in result.stdout

    metadata = json.loads((out / "calibration.json").read_text(encoding="utf-8"))
    artifact = out / "calibration.joblib"
    assert metadata["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert metadata["rules_hash"] == load_rules().in_force(2026).content_hash
    assert metadata["training_years"] == [2023, 2024] and metadata["held_out_year"] == 2025
    assert {"scikit-learn", "numpy", "scipy", "pandas", "joblib", "python"} <= set(
        metadata["versions"]
    )
    assert metadata["synthetic"] is True
    fitted = joblib.load(artifact)
    p = fitted["calibrator"].predict_proba(np.array([1000.0, 700.0]))[:, 1]
    assert p[0] <= p[1]
    assert fitted["logistic"].coef_.min() >= 0

    candidate = load_rules(out / "rules")
    assert candidate.version.endswith("-candidate")
    assert "status: candidate" in candidate.info.changes[-1].note
    force = candidate.in_force(2027)
    assert {i.code: i.points for i in force.indicators} == metadata["weights"]
    assert [(b.grade, b.min, b.max) for b in force.bands] == [
        (c["grade"], c["min"], c["max"]) for c in metadata["cutoffs"]
    ]
    # the years already rated keep their values (only the version differs)
    assert {**candidate.in_force(2026).as_data(), "version": ""} == {
        **load_rules().in_force(2026).as_data(),
        "version": "",
    }

    rated = CliRunner().invoke(
        app, ["rate", "--rules", str(out / "rules"), "--year", "2027", "--format", "json"]
    )
    assert rated.exit_code == 0, rated.stderr
    records = json.loads(rated.stdout)
    assert records and all(r["points"] == metadata["weights"] for r in records)  # no 2027 findings


@pytest.mark.parametrize("years", ["2023", "2023-2024", "2023,2025,2026"])
def test_too_few_or_gapped_years_fail_clearly(years: str) -> None:
    result = run("--demo", "--demo-institutions", "200", "--years", years)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error:")
    assert "years" in result.stderr


def test_too_few_institutions_fail_clearly() -> None:
    result = run("--demo", "--demo-institutions", "20", "--years", YEARS)
    assert result.exit_code == 1
    assert "too few institutions" in result.stderr


def test_one_class_only_fails_clearly() -> None:
    history = synthetic_history(300, (2023, 2024, 2025, 2026), seed=1, today=dt.date(2026, 6, 1))
    with pytest.raises(CalibrationError, match="one class only"):
        calibrate(history.institutions, history.findings.iloc[:0], load_rules(), range(2023, 2027))


def test_nan_fails_clearly(tmp_path: Path) -> None:
    history = synthetic_history(300, (2023, 2024, 2025, 2026), seed=1, today=dt.date(2026, 6, 1))
    findings = history.findings.assign(count=history.findings["count"].astype(float))
    findings.loc[3, "count"] = np.nan
    with pytest.raises(CalibrationError, match="NaN or missing values in 'count'"):
        calibrate(history.institutions, findings, load_rules(), range(2023, 2027))
    # from files, the input contract refuses the blank first (InputError, also exit 1)
    institutions, findings_csv = tmp_path / "i.csv", tmp_path / "f.csv"
    history.institutions.to_csv(institutions, index=False)
    findings.assign(occurred_on=findings["occurred_on"].dt.date).to_csv(findings_csv, index=False)
    result = run("--institutions", str(institutions), "--findings", str(findings_csv),
                 "--years", YEARS)  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error:") and "count" in result.stderr


def test_missing_files_and_bad_years_text_fail_clearly() -> None:
    assert "give --institutions and --findings, --stored" in run("--years", YEARS).stderr
    with pytest.raises(CalibrationError, match="years must look like"):
        parse_years("twenty")
