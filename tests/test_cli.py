"""The `credit-rating` command as a user runs it: a real process, real files, real output."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner, Result

from scoring.shipped import SAMPLE_DIR
from service.cli import app
from tests.servers import ROOT

SAMPLE_USCC = "52120111MJ06185738"  # 博文: the penalised institution of 2023


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """The command in-process (fast); `run_process` below checks the real process once."""
    return CliRunner().invoke(app, list(args), env=env)


def run_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ,
    )


def test_rate_json_lists_every_institution_with_points_per_indicator() -> None:
    result = run("rate", "--year", "2023", "--format", "json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 16
    for r in records:
        assert {"uscc", "name", "score", "grade", "vetoed", "vetoes", "points"} <= set(r)
        assert len(r["points"]) == 28
        assert sum(r["points"].values()) == r["score"]
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    penalised = next(r for r in records if r["uscc"] == SAMPLE_USCC)
    assert penalised["points"]["no_penalties"] == 0
    assert penalised["name"] == "天津市西青区博文培训学校"


def test_rate_csv_and_json_agree_and_five_grades_are_selectable() -> None:
    as_json = json.loads(run("rate", "--year", "2023", "--format", "json").stdout)
    rows = list(
        csv.DictReader(io.StringIO(run("rate", "--year", "2023", "--format", "csv").stdout))
    )
    assert [(r["uscc"], int(r["score"]), r["grade"]) for r in rows] == [
        (r["uscc"], r["score"], r["grade"]) for r in as_json
    ]
    five = json.loads(run("rate", "--year", "2023", "--scale", "five", "--format", "json").stdout)
    assert {r["scale"] for r in five} == {"five"}
    assert all((r["grade"] == "E") == (r["score"] < 800 or r["vetoed"]) for r in five)


def test_rate_table_aligns_chinese_names() -> None:
    result = run("rate", "--year", "2024")
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "52120111" in line]
    assert len(rows) == 16
    # Each score starts at the same terminal column whatever the width of the name before it.
    score_columns = set()
    for line in rows:
        name_end = line.index("培训学校") + len("培训学校")
        score_at = name_end + len(line[name_end:]) - len(line[name_end:].lstrip())
        score_columns.add(cell_len(line[:score_at]) + len(line[score_at:].split()[0]))
    assert len(score_columns) == 1, score_columns


def test_explain_names_the_findings_behind_each_lost_point() -> None:
    result = run("explain", "--year", "2023", SAMPLE_USCC)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "天津市西青区博文培训学校" in out
    assert "西青教罚〔2023〕1号" in out
    assert "评价年度内未受到行政处罚" in out
    as_json = json.loads(run("explain", "--year", "2023", SAMPLE_USCC, "--format", "json").stdout)
    lost = {i["code"]: i["lost"] for i in as_json["indicators"] if i["lost"]}
    assert lost["no_penalties"] == 30
    assert as_json["score"] == 1000 - sum(lost.values())
    assert all(i["findings"] for i in as_json["indicators"] if i["lost"])
    assert as_json["rules_hash"].startswith("sha256:")


@pytest.mark.parametrize(
    "args",
    [
        ("rate", "--year", "2021"),  # before the measure
        ("explain", "--year", "2023", "52120111MJ0000000X"),  # not in the list
        ("rate", "--year", "2023", "--findings", "no/such/file.csv"),
    ],
)
def test_errors_go_to_stderr_with_nothing_on_stdout(args: tuple[str, ...]) -> None:
    result = run_process(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error:")


def test_bad_input_lists_every_problem_and_rates_nothing(tmp_path: Path) -> None:
    findings = (SAMPLE_DIR / "findings.csv").read_text(encoding="utf-8").splitlines()
    findings[1] = findings[1].replace(",2022-", ",2022-13-")  # a month that does not exist
    findings[2] = findings[2].replace("52120111", "52120112")  # wrong code
    bad = tmp_path / "findings.csv"
    bad.write_text("\n".join(findings) + "\n", encoding="utf-8")
    result = run("rate", "--year", "2022", "--findings", str(bad))
    assert result.exit_code == 1 and result.stdout == ""
    assert "row 2, column occurred_on" in result.stderr
    assert "row 3, column uscc" in result.stderr


def test_a_gbk_file_is_named_as_such_without_mangled_text(tmp_path: Path) -> None:
    gbk = tmp_path / "institutions.csv"
    gbk.write_bytes((SAMPLE_DIR / "institutions.csv").read_text("utf-8").encode("gbk"))
    result = run("rate", "--year", "2023", "--institutions", str(gbk))
    assert result.exit_code == 1 and result.stdout == ""
    assert "UTF-8" in result.stderr and "GB" in result.stderr
    assert "\ufffd" not in result.stderr


def test_keys_import_and_verify_against_a_database(tmp_path: Path) -> None:
    env = {"CREDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    created = run("keys", "create", "--role", "analyst", "--name", "统计科", env=env)
    assert created.exit_code == 0 and created.stdout.startswith("cr_")
    listed = run("keys", "list", env=env).stdout
    assert "统计科" in listed and "analyst" in listed and created.stdout.strip() not in listed
    assert run("keys", "revoke", "1", env=env).exit_code == 0
    assert "revoked" in run("keys", "list", env=env).stdout
    assert run("keys", "revoke", "1", env=env).exit_code == 1

    files = [str(SAMPLE_DIR / "institutions.csv"), str(SAMPLE_DIR / "findings.csv")]
    first = run("import", *files, env=env)
    assert first.exit_code == 0, first.stderr
    assert "16 added" in first.stdout
    again = run("import", *files, env=env)
    assert "0 added" in again.stdout and "already on record" in again.stdout
    verified = run("verify", env=env)
    assert verified.exit_code == 0 and "0 snapshot(s) verified" in verified.stdout


def test_invalid_configuration_is_refused_naming_the_variable(tmp_path: Path) -> None:
    result = run("verify", env={"CREDIT_DATABASE_URL": "mysql://nowhere"})
    assert result.exit_code == 1 and result.stdout == ""
    assert "CREDIT_DATABASE_URL" in result.stderr


def test_a_conflicting_import_ends_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    """Run as a real process: what a supervisor sees is the message and exit status 1."""
    env = {**os.environ, "CREDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    findings = (SAMPLE_DIR / "findings.csv").read_text(encoding="utf-8").splitlines()
    header, first = findings[0], findings[1]
    finding_id = first.split(",")[header.split(",").index("finding_id")]
    changed = tmp_path / "changed.csv"  # the same finding id with another date
    changed.write_text(f"{header}\n{first.replace(',2022-', ',2023-', 1)}\n", encoding="utf-8")
    files = [str(SAMPLE_DIR / "institutions.csv"), str(SAMPLE_DIR / "findings.csv")]
    command = [sys.executable, "-m", "service.cli", "import"]
    assert subprocess.run([*command, *files], env=env, capture_output=True).returncode == 0
    result = subprocess.run(
        [*command, str(changed)], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert finding_id in result.stderr and "different content" in result.stderr


def test_an_unreachable_database_ends_with_a_message_not_a_traceback() -> None:
    env = {"CREDIT_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nowhere"}
    for command in (["verify"], ["keys", "list"], ["share", "--status"]):
        result = run(*command, env=env)
        assert result.exit_code == 1 and result.stdout == "", command
        assert result.stderr.startswith("error: the database"), (command, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_command_has_help_through_python_m() -> None:
    for command in ("rate", "explain", "import", "verify", "evaluate", "keys", "serve", "share"):
        result = run_process(command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage:" in result.stdout


def test_evaluate_compares_candidate_rules_with_the_published_grades(tmp_path: Path) -> None:
    env = {"CREDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    files = [str(SAMPLE_DIR / "institutions.csv"), str(SAMPLE_DIR / "findings.csv")]
    assert run("import", *files, env=env).exit_code == 0
    before = json.loads(run("evaluate", "--year", "2023", "--format", "json", env=env).stdout)
    assert before["published_revision"] is None and before["changes"] == 16
    # A candidate rule set: the same measure with refunds (indicator 12) ten times as costly.
    candidate = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", candidate)
    indicators = candidate / "indicators.yaml"
    text = indicators.read_text(encoding="utf-8")
    start = text.index("code: refunds_per_contract")
    at = text.index("deduction: {2022-12-03: 10}", start)
    assert at < text.index("- code:", start)  # the deduction of indicator 12 itself
    costlier = text[:at] + "deduction: {2022-12-03: 100}" + text[at + 27 :]
    indicators.write_text(costlier, encoding="utf-8")
    trial = run(
        "evaluate", "--year", "2023", "--rules", str(candidate), "--format", "json", env=env
    )
    assert trial.exit_code == 0, trial.stderr
    after = json.loads(trial.stdout)
    assert after["rules_hash"] != before["rules_hash"]
    lower = {
        a["uscc"]
        for a, b in zip(after["institutions"], before["institutions"], strict=True)
        if a["score"] < b["score"]
    }
    assert lower, "a costlier indicator must lower someone's score"
    table = run("evaluate", "--year", "2023", env=env)
    assert (
        table.exit_code == 0
        and "试算" in table.stdout
        and "天津市西青区博文培训学校" in table.stdout
    )


def test_a_rate_setting_that_cannot_be_read_is_refused_at_start() -> None:
    """It used to pass the settings and crash on the first request (service/api/guard.py)."""
    for name in ("CREDIT_ANONYMOUS_RATE", "CREDIT_FAILED_KEY_RATE"):
        result = run("verify", env={name: "lots"})
        assert result.exit_code == 1 and name in result.stderr, result.stderr


def test_a_scale_of_the_rules_in_use_is_accepted_and_an_unknown_one_named(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    scales = rules / "scales.yaml"
    scales.write_text(
        scales.read_text(encoding="utf-8").replace("code: five", "code: five_new"), encoding="utf-8"
    )
    mine = run("rate", "--year", "2023", "--rules", str(rules), "--scale", "five_new")
    assert mine.exit_code == 0, mine.stderr
    unknown = run("rate", "--year", "2023", "--scale", "six")
    assert unknown.exit_code == 1 and "six" in unknown.stderr and "four" in unknown.stderr
