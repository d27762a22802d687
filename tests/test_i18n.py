"""Messages in Chinese by default and in English with CREDIT_LANG=en, from one catalogue.

The suite runs in English (tests/conftest.py sets CREDIT_LANG=en); these tests switch the
language back and forth, in this process and in real CLI processes, and hold the catalogue
to the code: every message the code marks has a Chinese translation with the same
placeholders, and the catalogue keeps nothing the code no longer says.
"""

from __future__ import annotations

import ast
import os
import string
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from scoring import i18n
from scoring.errors import InputError
from scoring.input_files import read_inputs
from scoring.inputs import CHINESE_NAMES
from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS, load_rules
from tests.servers import ROOT

PACKAGES = ("scoring", "service")
"""Where messages are marked: the catalogue covers both packages."""


def code_messages() -> dict[str, str]:
    """Every msgid marked in the code (Babel's extractor, as `pybabel extract` runs it),
    with where it is first found."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for file, line, message, _comments, _context in extract_from_dir(ROOT / package):
            ids = message if isinstance(message, tuple) else (message,)
            for msgid in ids:
                found.setdefault(msgid, f"{package}/{file}:{line}")
    return found


def catalogue() -> dict[str, str]:
    with i18n.catalogue_path().open("rb") as handle:
        po = read_po(handle, locale=i18n.CHINESE)
    return {m.id: ("" if m.fuzzy else m.string) for m in po if m.id and isinstance(m.id, str)}


def fields(text: str) -> list[str]:
    """The placeholders of a brace-format text, with their conversion and format spec."""
    return sorted(
        f"{name}!{conversion}:{spec}"
        for _, name, spec, conversion in string.Formatter().parse(text)
        if name is not None
    )


def test_every_message_in_the_code_has_a_chinese_translation() -> None:
    translated = catalogue()
    missing = {m: where for m, where in code_messages().items() if not translated.get(m)}
    assert not missing, (
        "messages without a Chinese translation (docs/i18n.md: pybabel extract, pybabel "
        f"update, translate): {missing}"
    )


def test_the_catalogue_holds_no_message_the_code_no_longer_uses() -> None:
    stale = set(catalogue()) - set(code_messages())
    assert not stale, f"remove with pybabel update (docs/i18n.md): {sorted(stale)}"


def test_translations_keep_the_placeholders_of_their_message() -> None:
    wrong = {m: t for m, t in catalogue().items() if t and fields(m) != fields(t)}
    assert not wrong, wrong


def test_messages_are_marked_as_literals_not_f_strings() -> None:
    """Babel cannot extract an f-string or a concatenation: the message would go untranslated."""
    marked: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("_", "N_")
                    and not (
                        len(node.args) == 1 and isinstance(node.args[0], ast.Constant | ast.Name)
                    )
                ):
                    marked.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not marked, marked


@pytest.mark.parametrize(
    ("value", "language"),
    [
        (None, "zh_CN"),
        ("", "zh_CN"),
        ("zh_CN", "zh_CN"),
        ("zh", "zh_CN"),
        ("en", "en"),
        ("EN", "en"),
        ("en_US.UTF-8", "en"),
        ("fr", "zh_CN"),
    ],
)
def test_credit_lang_chooses_the_language(
    monkeypatch: pytest.MonkeyPatch, value: str | None, language: str
) -> None:
    if value is None:
        monkeypatch.delenv(i18n.ENVIRONMENT, raising=False)
    else:
        monkeypatch.setenv(i18n.ENVIRONMENT, value)
    assert i18n.language() == language


def test_the_catalogue_ships_inside_the_package() -> None:
    assert i18n.catalogue_path().is_file()
    assert i18n.catalogue_path().is_relative_to(Path(i18n.__file__).parent)


def bad_institutions(folder: Path) -> Path:
    path = folder / "机构.csv"
    path.write_text(
        "统一社会信用代码,机构名称,区划代码,办学许可证号\n52120116MJ0631127X,某培训学校,12011,L1\n",
        encoding="utf-8",
    )
    return path


def report(institutions: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_inputs(institutions, SAMPLE_FINDINGS, rules=load_rules())
    return str(caught.value)


def test_an_input_error_report_follows_credit_lang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    institutions = bad_institutions(tmp_path)
    monkeypatch.delenv(i18n.ENVIRONMENT)
    chinese = report(institutions)
    monkeypatch.setenv(i18n.ENVIRONMENT, "en")
    english = report(institutions)
    assert chinese != english
    assert "未进行评价" in chinese and "第 2 行" in chinese and "6 位数字" in chinese
    assert "nothing was rated" in english and "row 2" in english and "6 digits" in english
    for report_text in (chinese, english):  # the file and column as the supervisor wrote them
        assert "机构.csv" in report_text and "区划代码" in report_text


def run_cli(*args: str, language: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != i18n.ENVIRONMENT}
    env |= {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}  # help on one line per option
    if language is not None:
        env[i18n.ENVIRONMENT] = language
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_cli_process_reports_input_errors_in_the_language_of_credit_lang(
    tmp_path: Path,
) -> None:
    findings = tmp_path / "发现.csv"
    findings.write_text("统一社会信用代码,指标,发生日期\n", encoding="utf-8")
    institutions = bad_institutions(tmp_path)
    args = (
        "rate",
        "--year",
        "2023",
        "--institutions",
        str(institutions),
        "--findings",
        str(findings),
    )
    chinese = run_cli(*args, language=None)
    english = run_cli(*args, language="en")
    assert chinese.returncode == english.returncode == 1
    assert chinese.stdout == english.stdout == ""
    assert "输入数据有 1 处问题" in chinese.stderr and "problem" not in chinese.stderr
    assert "1 problem(s) in the input" in english.stderr


def test_a_cli_process_prints_help_in_the_language_of_credit_lang() -> None:
    chinese = run_cli("rate", "--help", language=None).stdout
    english = run_cli("rate", "--help", language="en").stdout
    assert "评价 YEAR 年度的全部机构" in chinese and "评价年度（自然年）" in chinese
    assert "选项" in chinese  # Typer's own panel title too
    assert "Rate every institution" not in chinese and "Rating year" not in chinese
    assert "Rate every institution" in english and "Rating year (calendar year)" in english
    assert "Options" in english
    listed = run_cli("--help", language=None).stdout
    assert "学科类校外培训机构信用评价" in listed and "为监管人员导出" in listed


def test_a_cli_process_says_what_went_wrong_in_the_language_of_credit_lang() -> None:
    args = ("rate", "--year", "2023", "--scale", "six")
    chinese = run_cli(*args, language=None)
    english = run_cli(*args, language="en")
    assert chinese.returncode == english.returncode == 1
    assert chinese.stderr.startswith("错误：") and "没有此等级档次" in chinese.stderr
    assert english.stderr.startswith("error: ") and "no such scale" in english.stderr


def test_a_chinese_headed_workbook_of_findings_is_rated(tmp_path: Path) -> None:
    """The supervisor's path: findings typed in Excel under Chinese headers, indicators by
    annex number and title, values in Chinese, rated with no English in sight."""
    rules = load_rules()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    fields_used = ("uscc", "indicator", "occurred_on", "count", "source", "reference", "note")
    sheet.append([CHINESE_NAMES[f] for f in fields_used])
    fees = next(i for i in rules.indicators if i.code == "fees_displayed")
    uscc = "52120111MJ06185738"
    sheet.append([uscc, f"第{fees.number}项", "2023-05-17", 1, "检查", "西青教查〔2023〕3号", ""])
    sheet.append([uscc, fees.title, "2023-06-01", 1, "投诉", "", "家长投诉"])
    path = tmp_path / "检查发现.xlsx"
    workbook.save(path)
    _, findings = read_inputs(SAMPLE_INSTITUTIONS, path, rules=rules)
    assert findings["indicator"].tolist() == ["fees_displayed", "fees_displayed"]
    assert findings["source"].tolist() == ["inspection", "complaint"]
    rated = run_cli("rate", "--year", "2023", "--findings", str(path), language=None)
    assert rated.returncode == 0, rated.stderr
    assert "天津市西青区博文培训学校" in rated.stdout
