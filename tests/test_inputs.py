"""Input reading and validation: every problem kind is found, located and explained.

Bad files are written in each test (tmp_path) so the bytes under test sit next to the
assertions about them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stdnum.cn import uscc as stdnum_uscc

from scoring import uscc, uscc_columns
from scoring.errors import InputError, Problem
from scoring.input_files import read_inputs, read_table
from scoring.inputs import (
    CHINESE_NAMES,
    FINDING_COLUMNS,
    INSTITUTION_COLUMNS,
    validate,
    validate_findings,
    validate_institutions,
)
from scoring.problems import MAX_PROBLEMS
from scoring.rules import RuleSet
from scoring.shipped import load_rules

# Names with full-width punctuation, the kind Excel users type.
NAMES = ["学而思（西青）培训学校", "新东方·精英：课堂「语文」", "“启明星”教育，有限公司"]


def code(n: int, prefix: str = "52120111") -> str:
    """A valid credit code: prefix + 9 characters + the check character (python-stdnum's)."""
    first17 = f"{prefix}MJ{n:07d}"
    return first17 + stdnum_uscc.calc_check_digit(first17)


def wrong_check(good: str) -> tuple[str, str]:
    """The code with a wrong check character, and the right one."""
    wrong = "0" if good[-1] != "0" else "1"
    return good[:-1] + wrong, good[-1]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


def institutions_raw(rows: list[dict[str, str]] | None = None) -> pd.DataFrame:
    """A raw institutions frame as the readers make it: text cells, spreadsheet row index."""
    rows = rows or [
        {"uscc": code(i), "name": NAMES[i - 1], "district_code": "120111", "licence_no": f"L{i}"}
        for i in (1, 2, 3)
    ]
    return pd.DataFrame(rows, index=range(2, len(rows) + 2), dtype="str")


def findings_raw(rows: list[dict[str, str]] | None = None) -> pd.DataFrame:
    rows = rows or [
        {"uscc": code(1), "indicator": "licence_valid", "occurred_on": "2023-05-17"},
        {"uscc": code(2), "indicator": "refunds_per_contract", "occurred_on": "2023-06-01"},
    ]
    return pd.DataFrame(rows, index=range(2, len(rows) + 2), dtype="str")


def finding(**cells: str) -> dict[str, str]:
    row = {"uscc": code(1), "indicator": "licence_valid", "occurred_on": "2023-05-17"}
    return row | cells


def check_findings(rules: RuleSet, *rows: dict[str, str]) -> list[Problem]:
    _, problems = validate_findings(
        findings_raw(list(rows)), file="findings.csv", rules=rules, known_uscc=[code(1), code(2)]
    )
    return list(problems)


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# The happy path and defaults -------------------------------------------------------------


def test_valid_input_is_normalised_with_every_default(rules: RuleSet) -> None:
    institutions, findings = validate(
        institutions_raw(),
        findings_raw(),
        rules=rules,
        institutions_file="institutions.csv",
        findings_file="findings.csv",
    )
    assert list(institutions.columns) == list(INSTITUTION_COLUMNS.order)
    assert list(findings.columns) == list(FINDING_COLUMNS.order)
    assert isinstance(institutions.index, pd.RangeIndex)
    assert isinstance(findings.index, pd.RangeIndex)
    assert institutions["name"].tolist() == NAMES
    assert institutions["address"].tolist() == ["", "", ""]
    assert institutions["status"].tolist() == ["operating"] * 3
    assert findings["finding_id"].tolist() == ["#2", "#3"]  # spreadsheet rows
    assert findings["count"].tolist() == [1, 1]
    assert findings["count"].dtype == np.int64
    assert findings["source"].tolist() == ["other", "other"]
    assert findings["status"].tolist() == ["active", "active"]
    assert findings["reference"].tolist() == findings["note"].tolist() == ["", ""]
    assert pd.api.types.is_datetime64_dtype(findings["occurred_on"])
    assert findings["occurred_on"].tolist() == [pd.Timestamp(2023, 5, 17), pd.Timestamp(2023, 6, 1)]


def test_empty_optional_cells_take_their_defaults(rules: RuleSet) -> None:
    raw = findings_raw(
        [finding(count="", source="", status="", finding_id="", reference="", note="")]
    )
    findings, problems = validate_findings(raw, file="f.csv", rules=rules, known_uscc=[code(1)])
    assert list(problems) == []
    row = findings.iloc[0]
    assert (row["count"], row["source"], row["status"], row["finding_id"]) == (
        1,
        "other",
        "active",
        "#2",
    )


def test_given_optional_values_are_kept(rules: RuleSet) -> None:
    raw = findings_raw(
        [
            finding(
                count="3",
                source="penalty",
                status="revoked",
                finding_id="F-7",
                reference="西青教罚〔2023〕1号",
                note="复核撤销",
            )
        ]
    )
    findings, problems = validate_findings(raw, file="f.csv", rules=rules, known_uscc=[code(1)])
    assert list(problems) == []
    assert findings.iloc[0].to_dict() == {
        "finding_id": "F-7",
        "uscc": code(1),
        "indicator": "licence_valid",
        "occurred_on": pd.Timestamp(2023, 5, 17),
        "count": 3,
        "source": "penalty",
        "reference": "西青教罚〔2023〕1号",
        "status": "revoked",
        "note": "复核撤销",
    }


def test_spaces_around_codes_are_forgiven_and_stripped(rules: RuleSet) -> None:
    raw = findings_raw([finding(uscc=f" {code(1)} ", indicator="licence_valid ", source=" other")])
    findings, problems = validate_findings(raw, file="f.csv", rules=rules, known_uscc=[code(1)])
    assert list(problems) == []
    assert findings.loc[0, "uscc"] == code(1)
    assert findings.loc[0, "indicator"] == "licence_valid"
    assert findings.loc[0, "source"] == "other"


def test_veto_codes_are_accepted_as_indicators(rules: RuleSet) -> None:
    assert check_findings(rules, finding(indicator="veto_major_accident")) == []


# One test per problem kind ---------------------------------------------------------------


def test_bad_credit_code_says_what_the_check_character_should_be() -> None:
    bad, right = wrong_check(code(2))
    raw = institutions_raw()
    raw.loc[3, "uscc"] = bad
    _, problems = validate_institutions(raw, file="institutions.csv")
    problem = only(list(problems))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "institutions.csv",
        3,
        "uscc",
        bad,
    )
    assert f"should be {right!r}" in problem.expected


def test_credit_code_of_wrong_length_is_reported() -> None:
    raw = institutions_raw()
    raw.loc[4, "uscc"] = code(3)[:-1]
    problem = only(list(validate_institutions(raw, file="i.csv")[1]))
    assert (problem.row, problem.column) == (4, "uscc")
    assert "18 characters" in problem.expected


def test_unknown_indicator_suggests_the_closest_code(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(), finding(indicator="refunds_per_contrct")))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "findings.csv",
        3,
        "indicator",
        "refunds_per_contrct",
    )
    assert "did you mean 'refunds_per_contract'" in problem.expected


@pytest.mark.parametrize("name", ["12", "第12项", " 第12项 "])
def test_indicator_may_be_named_by_its_annex_number(rules: RuleSet, name: str) -> None:
    [number_12] = [i for i in rules.indicators if i.number == 12]
    frame, problems = validate_findings(
        findings_raw([finding(indicator=name)]), file="f.csv", rules=rules, known_uscc=[code(1)]
    )
    assert not list(problems)
    assert frame["indicator"].tolist() == [number_12.code]


def test_indicator_and_veto_may_be_named_by_their_exact_chinese_title(rules: RuleSet) -> None:
    indicator, veto = rules.indicators[3], rules.vetoes[0]
    rows = [finding(indicator=indicator.title), finding(indicator=veto.title), finding()]
    frame, problems = validate_findings(
        findings_raw(rows), file="f.csv", rules=rules, known_uscc=[code(1)]
    )
    assert not list(problems)
    assert frame["indicator"].tolist() == [indicator.code, veto.code, "licence_valid"]


def test_unknown_indicator_says_every_way_to_name_one(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(indicator="第99项")))
    assert (problem.column, problem.value) == ("indicator", "第99项")
    for accepted in ("code", "annex number", "第12项", "Chinese title"):
        assert accepted in problem.expected


def test_a_title_almost_right_suggests_the_code(rules: RuleSet) -> None:
    title = rules.indicators[3].title
    problem = only(check_findings(rules, finding(indicator=title[:-1])))
    assert f"did you mean {rules.indicators[3].code!r}" in problem.expected


@pytest.mark.parametrize("count", ["2.5", "0", "-1", "abc", "1e3", "１", "1000001"])
def test_count_must_be_a_whole_number_of_at_least_one(rules: RuleSet, count: str) -> None:
    problem = only(check_findings(rules, finding(count=count)))
    assert (problem.row, problem.column, problem.value) == (2, "count", count)
    assert "whole number" in problem.expected


def test_date_that_does_not_exist_is_reported(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(occurred_on="2023-02-30")))
    assert (problem.row, problem.column, problem.value) == (2, "occurred_on", "2023-02-30")
    assert "01–28" in problem.expected


@pytest.mark.parametrize("day", ["2023/05/17", "17.05.2023", "2023-5-17", "20230517", "昨天"])
def test_date_not_written_iso_is_reported(rules: RuleSet, day: str) -> None:
    problem = only(check_findings(rules, finding(occurred_on=day)))
    assert (problem.column, problem.value) == ("occurred_on", day)
    assert "YYYY-MM-DD" in problem.expected


def test_year_zero_is_not_a_date(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(occurred_on="0000-01-01")))
    assert "0001 or later" in problem.expected


def test_month_out_of_range_is_explained(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(occurred_on="2023-13-01")))
    assert "01–12" in problem.expected


def test_unknown_finding_status_suggests_the_right_one(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(status="Revoked")))
    assert (problem.column, problem.value) == ("status", "Revoked")
    assert "active, revoked" in problem.expected
    assert "did you mean 'revoked'" in problem.expected


def test_unknown_source_is_reported(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(source="inspektion")))
    assert (problem.row, problem.column, problem.value) == (2, "source", "inspektion")
    assert "did you mean 'inspection'" in problem.expected


def test_unknown_institution_status_is_reported() -> None:
    raw = institutions_raw()
    raw["status"] = ["operating", "paused", ""]
    problem = only(list(validate_institutions(raw, file="i.csv")[1]))
    assert (problem.row, problem.column, problem.value) == (3, "status", "paused")
    assert "operating, suspended, closed" in problem.expected


@pytest.mark.parametrize("district", ["12011", "1201110", "12O111", "西青区"])
def test_district_code_must_be_six_digits(district: str) -> None:
    raw = institutions_raw()
    raw.loc[2, "district_code"] = district
    problem = only(list(validate_institutions(raw, file="i.csv")[1]))
    assert (problem.row, problem.column, problem.value) == (2, "district_code", district)
    assert "6 digits" in problem.expected


@pytest.mark.parametrize("column", ["uscc", "name", "district_code", "licence_no"])
def test_empty_required_institution_cell_is_reported(column: str) -> None:
    raw = institutions_raw()
    raw.loc[3, column] = "  "
    problem = only(list(validate_institutions(raw, file="i.csv")[1]))
    assert (problem.row, problem.column, problem.value) == (3, column, "  ")
    assert "required" in problem.expected


@pytest.mark.parametrize("column", ["uscc", "indicator", "occurred_on"])
def test_empty_required_finding_cell_is_reported(rules: RuleSet, column: str) -> None:
    problem = only(check_findings(rules, finding(**{column: ""})))
    assert (problem.row, problem.column, problem.value) == (2, column, "")
    assert "required" in problem.expected


def test_duplicate_institution_names_both_rows() -> None:
    raw = institutions_raw()
    raw.loc[4, "uscc"] = code(1)
    problem = only(list(validate_institutions(raw, file="i.csv")[1]))
    assert (problem.row, problem.column, problem.value) == (4, "uscc", code(1))
    assert "row 2" in problem.expected


def test_finding_for_an_institution_not_in_the_list_is_reported(rules: RuleSet) -> None:
    stranger = code(99)
    problem = only(check_findings(rules, finding(), finding(uscc=stranger)))
    assert (problem.row, problem.column, problem.value) == (3, "uscc", stranger)
    assert "institutions file" in problem.expected


def test_finding_with_a_bad_code_gets_the_check_character_message(rules: RuleSet) -> None:
    bad, right = wrong_check(code(1))
    problem = only(check_findings(rules, finding(uscc=bad)))
    assert f"should be {right!r}" in problem.expected


def test_missing_column_is_reported_once(rules: RuleSet) -> None:
    raw = findings_raw().drop(columns="occurred_on")
    problem = only(list(validate_findings(raw, file="f.csv", rules=rules, known_uscc=None)[1]))
    assert (problem.file, problem.row, problem.column, problem.value) == (
        "f.csv",
        None,
        "occurred_on",
        None,
    )
    assert "missing" in problem.expected


def test_extra_column_suggests_the_closest_known_name() -> None:
    raw = institutions_raw()
    raw["adress"] = ""
    problem = only(list(validate_institutions(raw, file="i.csv")[1]))
    assert (problem.row, problem.column) == (None, "adress")
    assert "did you mean 'address'" in problem.expected


def test_a_chinese_near_miss_suggests_the_name_in_the_files_language() -> None:
    chinese = {n: CHINESE_NAMES[n] for n in INSTITUTION_COLUMNS.order}
    raw = institutions_raw().rename(columns=chinese).rename(columns={"机构名称": "名称"})
    problems = list(validate_institutions(raw, file="i.csv")[1])
    extra = next(p for p in problems if p.column == "名称")
    assert "did you mean '机构名称'" in extra.expected
    assert any(p.column == "机构名称" and "missing" in p.expected for p in problems)
    english = institutions_raw().rename(columns={"name": "名称"})
    extra = next(p for p in validate_institutions(english, file="i.csv")[1] if p.column == "名称")
    assert "did you mean 'name'" in extra.expected


def test_duplicate_header_is_reported() -> None:
    raw = institutions_raw()
    raw.columns = ["uscc", "name", "name", "licence_no"]
    problems = list(validate_institutions(raw, file="i.csv")[1])
    assert any(p.column == "name" and "once" in p.expected for p in problems)


# Collecting and capping ------------------------------------------------------------------


def test_three_errors_in_one_file_give_three_problems(rules: RuleSet) -> None:
    rows = [finding(count="0"), finding(), finding(indicator="nope", occurred_on="2023-02-29")]
    problems = check_findings(rules, *rows)
    assert [(p.row, p.column) for p in problems] == [
        (2, "count"),
        (4, "indicator"),
        (4, "occurred_on"),
    ]


def test_validate_raises_one_error_listing_both_files(rules: RuleSet) -> None:
    institutions = institutions_raw()
    institutions.loc[2, "district_code"] = "12"
    findings = findings_raw([finding(count="x"), finding(extra_col="1")])
    with pytest.raises(InputError) as caught:
        validate(
            institutions,
            findings,
            rules=rules,
            institutions_file="i.csv",
            findings_file="f.csv",
        )
    located = {(p.file, p.row, p.column) for p in caught.value.problems}
    assert located == {
        ("i.csv", 2, "district_code"),
        ("f.csv", 2, "count"),
        ("f.csv", None, "extra_col"),
    }
    assert "3 problem(s)" in str(caught.value)


def test_report_is_capped_but_counts_every_problem(rules: RuleSet) -> None:
    rows = [finding(count="0")] * (MAX_PROBLEMS + 500)
    with pytest.raises(InputError) as caught:
        validate(
            institutions_raw(),
            findings_raw(rows),
            rules=rules,
            institutions_file="i.csv",
            findings_file="f.csv",
        )
    error = caught.value
    assert len(error.problems) == MAX_PROBLEMS
    assert error.total == MAX_PROBLEMS + 500
    assert str(error).endswith("… and 500 more")
    assert [p.row for p in error.problems[:3]] == [2, 3, 4]  # first rows first


def test_whole_file_problems_are_listed_before_capped_rows(rules: RuleSet) -> None:
    rows = [finding(count="0", typo="")] * (MAX_PROBLEMS + 1)
    with pytest.raises(InputError) as caught:
        validate(
            institutions_raw(),
            findings_raw(rows),
            rules=rules,
            institutions_file="i.csv",
            findings_file="f.csv",
        )
    assert caught.value.problems[0].column == "typo"


def test_findings_of_a_bad_institution_code_are_not_reported_again(rules: RuleSet) -> None:
    bad, _ = wrong_check(code(1))
    institutions = institutions_raw()
    institutions.loc[2, "uscc"] = bad
    with pytest.raises(InputError) as caught:
        validate(
            institutions,
            findings_raw([finding(uscc=bad)]),
            rules=rules,
            institutions_file="i.csv",
            findings_file="f.csv",
        )
    assert [(p.file, p.row) for p in caught.value.problems] == [("i.csv", 2)]


# Typed columns (Parquet) -----------------------------------------------------------------


def test_typed_columns_are_checked_in_their_type(rules: RuleSet) -> None:
    raw = pd.DataFrame(
        {
            "uscc": [code(1), code(2), code(1)],
            "indicator": ["licence_valid"] * 3,
            "occurred_on": pd.Series(
                [pd.Timestamp("2023-05-17 14:30"), pd.Timestamp("2023-06-01"), pd.NaT],
                index=[1, 2, 3],
            ),
            "count": pd.array([2, None, 0], dtype="Int64"),
        },
        index=[1, 2, 3],
    )
    findings, problems = validate_findings(
        raw, file="f.parquet", rules=rules, known_uscc=[code(1), code(2)]
    )
    assert [(p.row, p.column, p.value) for p in problems] == [
        (3, "occurred_on", ""),
        (3, "count", "0"),
    ]
    assert findings["occurred_on"].iloc[0] == pd.Timestamp(2023, 5, 17)  # midnight
    assert findings["count"].iloc[:2].tolist() == [2, 1]


def test_float_counts_must_be_whole(rules: RuleSet) -> None:
    raw = findings_raw([finding(), finding()])
    raw["count"] = [2.0, 2.5]
    _, problems = validate_findings(raw, file="f.parquet", rules=rules, known_uscc=[code(1)])
    assert [(p.row, p.value) for p in problems] == [(3, "2.5")]


# Fast paths agree with the plain definitions ---------------------------------------------


TRICKY = [
    code(1),
    code(2).lower(),
    wrong_check(code(3))[0],
    code(4)[:-1],
    code(5) + "0",
    "",
    "５２１２０１１１ＭＪ００００００１Ｘ",
    "52120111MJ000000１X",
    "52120111MJ00000I1X",
    "52120111MJ0000:01X",
    "52120111MJ000000" + "\x7f" + "X",
    "ＡＢ",
    code(6, prefix="91120000"),
    code(7, prefix="Y1110105"),
]


def test_vectorised_code_check_agrees_with_the_scalar_check() -> None:
    rng = np.random.default_rng(7)
    # Positions 1–8 as GB 32100-2015 structures them (department, category, 6-digit division).
    heads = [
        rng.choice(list(uscc.DEPARTMENTS)) + "".join(rng.choice(list("0123456789"), 7))
        for _ in range(500)
    ]
    valid_bodies = [head + "".join(rng.choice(list(uscc.ALPHABET), 9)) for head in heads]
    valid = [body + stdnum_uscc.calc_check_digit(body) for body in valid_bodies]
    # 18 characters, some outside the alphabet: about 1 in 31 has a "right" check by chance.
    noisy = ["".join(rng.choice(list(uscc.ALPHABET + "IOSVZaz:@ "), 18)) for _ in range(3000)]
    codes = TRICKY + valid + noisy
    series = pd.Series(codes, dtype="str")
    assert uscc_columns.valid(series).tolist() == [uscc.is_valid(c) for c in codes]
    assert uscc_columns.valid(series).sum() >= len(valid)


@pytest.mark.parametrize("prefixes", [1, 3, 600])
def test_fast_membership_agrees_with_isin(prefixes: int) -> None:
    rng = np.random.default_rng(prefixes)
    known = [code(i, prefix=f"5212{i % prefixes:04d}") for i in range(2000)]
    strangers = [code(i, prefix=f"5212{i % prefixes:04d}") for i in range(2000, 2100)]
    near = [c[:9] + "Z" + c[10:] for c in known[:50]]  # a byte outside the alphabet
    pool = np.array(known + strangers + near + TRICKY, dtype=object)
    asked = pd.Series(pool[rng.integers(0, len(pool), 20_000)], dtype="str")
    known_series = pd.Series(known + TRICKY[2:5] + known[:3], dtype="str")  # repeats too
    expected = asked.isin(set(known_series)).to_numpy()
    assert uscc_columns.listed(asked, known_series).tolist() == expected.tolist()
    assert expected.any() and not expected.all()
    unique_known = pd.Series(pd.unique(known_series), dtype="str")
    assert (
        uscc_columns.positions(asked, unique_known).tolist()
        == pd.Index(unique_known).get_indexer(asked).tolist()
    )


# Reading files ---------------------------------------------------------------------------

INSTITUTIONS_CSV = (
    "uscc,name,district_code,licence_no,address\n"
    f"{code(1)},{NAMES[0]},120111,教民1201113000001号,天津市西青区（杨柳青镇）\n"
    f'{code(2)},"{NAMES[1]}",120111,L2,\n'
    f'{code(3)},"{NAMES[2].replace(chr(34), chr(34) * 2)}",120111,L3,"多行\n地址"\n'
)
FINDINGS_CSV = (
    "uscc,indicator,occurred_on,count,source,reference\n"
    f"{code(1)},licence_valid,2023-05-17,,inspection,\n"
    f"{code(2)},refunds_per_contract,2023-06-01,3,penalty,西青教罚〔2023〕1号\n"
)


def write(path: Path, text: str, *, bom: bool = False, encoding: str = "utf-8") -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


def normalised(institutions: Path, findings: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_inputs(institutions, findings, rules=load_rules())


def test_csv_with_and_without_bom_read_the_same(tmp_path: Path) -> None:
    plain = read_table(write(tmp_path / "plain.csv", INSTITUTIONS_CSV))
    bom = read_table(write(tmp_path / "bom.csv", INSTITUTIONS_CSV, bom=True))
    pd.testing.assert_frame_equal(plain, bom)
    assert plain.columns[0] == "uscc"
    assert plain["name"].tolist() == NAMES
    assert plain["address"].tolist() == ["天津市西青区（杨柳青镇）", "", "多行\n地址"]


def test_csv_rows_keep_their_spreadsheet_numbers(tmp_path: Path) -> None:
    text = (
        "uscc,indicator,occurred_on,note\n"
        f'{code(1)},licence_valid,2023-05-17,"两行\n备注"\n'
        "\n"
        ",,,\n"
        f"{code(1)},licence_valid,2023-02-30,\n"
    )
    raw = read_table(write(tmp_path / "f.csv", text))
    assert raw.index.tolist() == [2, 5]  # blank rows 3 and 4 dropped, not renumbered
    with pytest.raises(InputError) as caught:
        normalised(write(tmp_path / "i.csv", INSTITUTIONS_CSV), tmp_path / "f.csv")
    assert [(p.row, p.column) for p in caught.value.problems] == [(5, "occurred_on")]


def test_gbk_csv_is_reported_without_mojibake(tmp_path: Path) -> None:
    path = write(tmp_path / "gbk.csv", INSTITUTIONS_CSV, encoding="gbk")
    with pytest.raises(InputError) as caught:
        read_table(path)
    problem = only(caught.value.problems)
    assert (problem.file, problem.row, problem.value) == (str(path), None, None)
    assert "UTF-8" in problem.expected
    assert "GBK" in problem.expected
    with pytest.raises(UnicodeDecodeError) as decoding:
        INSTITUTIONS_CSV.encode("gbk").decode("utf-8")
    assert f"byte {decoding.value.start} " in problem.expected
    assert "line 2" in problem.expected
    # Nothing of the file's text, decoded or mis-decoded, is in the message.
    message = str(caught.value)
    assert "\ufffd" not in message
    assert not any(name[:2] in message for name in NAMES)
    for wrong in ("latin-1", "cp1252"):
        garbled = INSTITUTIONS_CSV.encode("gbk").decode(wrong, errors="ignore")
        assert garbled.splitlines()[1][20:30] not in message


def test_utf16_csv_is_recognised(tmp_path: Path) -> None:
    path = write(tmp_path / "u16.csv", INSTITUTIONS_CSV, encoding="utf-16")
    with pytest.raises(InputError) as caught:
        read_table(path)
    assert "UTF-16" in only(caught.value.problems).expected


def test_ragged_csv_row_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    text = (
        "uscc,indicator,occurred_on\n"
        f"{code(1)},licence_valid,2023-05-17,surplus\n"
        f"{code(1)},licence_valid,2023-02-30\n"
        f"{code(1)},licence_valid\n"
    )
    with pytest.raises(InputError) as caught:
        normalised(write(tmp_path / "i.csv", INSTITUTIONS_CSV), write(tmp_path / "f.csv", text))
    assert [(p.row, p.column) for p in caught.value.problems] == [
        (2, None),
        (3, "occurred_on"),
        (4, "occurred_on"),  # a short row is padded: its missing date is reported
    ]


def test_empty_csv_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_table(write(tmp_path / "empty.csv", ""))
    assert "header" in only(caught.value.problems).expected


def test_header_only_csv_gives_empty_frames(tmp_path: Path) -> None:
    institutions, findings = normalised(
        write(tmp_path / "i.csv", INSTITUTIONS_CSV.splitlines()[0] + "\n"),
        write(tmp_path / "f.csv", FINDINGS_CSV.splitlines()[0] + "\n"),
    )
    assert len(institutions) == len(findings) == 0
    assert list(findings.columns) == list(FINDING_COLUMNS.order)


def test_empty_json_list_means_no_findings(tmp_path: Path) -> None:
    (tmp_path / "f.json").write_text("[]", encoding="utf-8")
    _, findings = normalised(write(tmp_path / "i.csv", INSTITUTIONS_CSV), tmp_path / "f.json")
    assert len(findings) == 0
    assert list(findings.columns) == list(FINDING_COLUMNS.order)


def test_unnamed_empty_columns_are_dropped(tmp_path: Path) -> None:
    text = "\n".join(line + ",," for line in INSTITUTIONS_CSV.rstrip("\n").split("\n"))
    raw = read_table(write(tmp_path / "i.csv", text.replace('\n地址",,', '\n地址"')))
    assert list(raw.columns) == ["uscc", "name", "district_code", "licence_no", "address"]


def write_json(path: Path, text: str) -> Path:
    """The CSV's rows as a JSON list of objects, numbers where a tool would write numbers."""
    rows = read_table(write(path.with_suffix(".tmp.csv"), text))
    records = []
    for row in rows.to_dict(orient="records"):
        record: dict[str, object] = {k: v for k, v in row.items() if v != ""}
        for key in ("count", "district_code"):
            if key in record:
                record[key] = int(str(record[key]))
        records.append(record)
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def write_xlsx(path: Path, text: str) -> Path:
    """The CSV's rows in a workbook, with real date and number cells as Excel stores them."""
    rows = read_table(write(path.with_suffix(".tmp.csv"), text))
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(list(rows.columns))
    for row in rows.to_dict(orient="records"):
        cells: list[object] = []
        for key, value in row.items():
            if key == "occurred_on":
                cells.append(dt.datetime.fromisoformat(str(value)))
            elif key in ("count", "district_code") and value:
                cells.append(float(str(value)) if key == "count" else int(str(value)))
            else:
                cells.append(value or None)
        sheet.append(cells)
    workbook.save(path)
    return path


def test_json_and_xlsx_normalise_to_the_same_frames_as_csv(tmp_path: Path) -> None:
    expected = normalised(
        write(tmp_path / "i.csv", INSTITUTIONS_CSV, bom=True),
        write(tmp_path / "f.csv", FINDINGS_CSV),
    )
    from_json = normalised(
        write_json(tmp_path / "i.json", INSTITUTIONS_CSV),
        write_json(tmp_path / "f.json", FINDINGS_CSV),
    )
    from_xlsx = normalised(
        write_xlsx(tmp_path / "i.xlsx", INSTITUTIONS_CSV),
        write_xlsx(tmp_path / "f.xlsx", FINDINGS_CSV),
    )
    assert expected[0]["name"].tolist() == NAMES
    for frames in (from_json, from_xlsx):
        institutions, findings = frames
        pd.testing.assert_frame_equal(institutions, expected[0])
        # finding_id defaults differ by format: rows (CSV, xlsx) versus positions (JSON).
        pd.testing.assert_frame_equal(
            findings.drop(columns="finding_id"), expected[1].drop(columns="finding_id")
        )
    assert from_xlsx[1]["finding_id"].tolist() == ["#2", "#3"]
    assert from_json[1]["finding_id"].tolist() == ["#1", "#2"]


def test_typed_parquet_files_are_read_and_checked(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "uscc": [code(1), code(2), code(3)],
                "name": NAMES,
                "district_code": pa.array([120111] * 3, pa.int64()),
                "licence_no": ["L1", "L2", "L3"],
            }
        ),
        tmp_path / "i.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "uscc": [code(1), code(2)],
                "indicator": ["licence_valid", "refunds_per_contract"],
                "occurred_on": pa.array([dt.date(2023, 5, 17), dt.date(2023, 6, 1)], pa.date32()),
                "count": pa.array([None, 3], pa.int64()),
            }
        ),
        tmp_path / "f.parquet",
    )
    institutions, findings = normalised(tmp_path / "i.parquet", tmp_path / "f.parquet")
    assert institutions["district_code"].tolist() == ["120111"] * 3
    assert institutions["name"].tolist() == NAMES
    assert findings["occurred_on"].tolist() == [pd.Timestamp(2023, 5, 17), pd.Timestamp(2023, 6, 1)]
    assert findings["count"].tolist() == [1, 3]
    assert findings["finding_id"].tolist() == ["#1", "#2"]


def test_bad_typed_parquet_value_is_located(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "uscc": [code(1)],
                "indicator": ["licence_valid"],
                "occurred_on": pa.array([dt.date(2023, 5, 17)], pa.date32()),
                "count": pa.array([0], pa.int64()),
            }
        ),
        tmp_path / "f.parquet",
    )
    with pytest.raises(InputError) as caught:
        normalised(write(tmp_path / "i.csv", INSTITUTIONS_CSV), tmp_path / "f.parquet")
    problem = only(caught.value.problems)
    assert (problem.row, problem.column, problem.value) == (1, "count", "0")


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("bad.json", '[{"uscc": ', "valid JSON"),
        ("object.json", '{"institutions": []}', "list of objects"),
        ("bad.xlsx", "not a workbook", ".xlsx"),
        ("bad.parquet", "not parquet", "Parquet"),
        ("data.txt", "uscc\n", ".csv, .json, .xlsx, .parquet"),
        ("old.xls", "", "save old .xls"),
    ],
)
def test_unreadable_files_are_problems_not_tracebacks(
    tmp_path: Path, name: str, content: str, says: str
) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(InputError) as caught:
        read_table(path)
    problem = only(caught.value.problems)
    assert problem.file == str(path)
    assert says in problem.expected


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_table(tmp_path / "nowhere.csv")
    assert "opened" in only(caught.value.problems).expected


def test_json_rows_that_are_not_objects_are_located(tmp_path: Path) -> None:
    path = tmp_path / "i.json"
    path.write_text(json.dumps([{"uscc": code(1), "name": ["x"]}, 7]), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_table(path)
    assert [(p.row, p.column) for p in caught.value.problems] == [(1, "name"), (2, None)]


def test_read_inputs_reports_both_files_at_once(tmp_path: Path) -> None:
    institutions = write(tmp_path / "i.csv", INSTITUTIONS_CSV, encoding="gbk")
    findings = write(tmp_path / "f.csv", FINDINGS_CSV.replace("2023-06-01", "2023-06-31"))
    with pytest.raises(InputError) as caught:
        normalised(institutions, findings)
    assert [(Path(p.file).name, p.row, p.column) for p in caught.value.problems] == [
        ("i.csv", None, None),
        ("f.csv", 3, "occurred_on"),
    ]


def test_finding_ids_must_be_unique_short_and_without_spaces() -> None:
    rules = load_rules()
    raw = pd.DataFrame(
        {
            "uscc": ["52120116MJ0631127X"] * 4,
            "indicator": ["licence_valid"] * 4,
            "occurred_on": ["2023-01-01"] * 4,
            "finding_id": ["XQ-1", "XQ-1", "x" * 65, "has space"],
        },
        index=[2, 3, 4, 5],
    )
    _, problems = validate_findings(raw, file="f.csv", rules=rules, known_uscc=None)
    assert [(p.row, p.column) for p in problems] == [
        (2, "finding_id"),
        (3, "finding_id"),
        (4, "finding_id"),
        (5, "finding_id"),
    ]
    assert "used once" in problems[0].expected
    assert "1-64 characters" in problems[2].expected


def test_a_nul_character_in_free_text_is_a_problem_not_stored() -> None:
    raw = pd.DataFrame(
        {
            "uscc": ["52120116MJ0631127X"],
            "name": ["天津市西青区\x00培训学校"],
            "district_code": ["120111"],
            "licence_no": ["教民1\x00号"],
        },
        index=[2],
    )
    _, problems = validate_institutions(raw, file="i.csv")
    assert {(p.row, p.column) for p in problems} == {(2, "name"), (2, "licence_no")}
    assert all("NUL" in p.expected for p in problems)


# Chinese headers and values --------------------------------------------------------------


def in_chinese(text: str) -> str:
    """A CSV with its header row in Chinese."""
    header, rest = text.split("\n", 1)
    return ",".join(CHINESE_NAMES[n] for n in header.split(",")) + "\n" + rest


def chinese_header(path: Path) -> Path:
    """A JSON or .xlsx file rewritten with its column names in Chinese."""
    if path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        rows = [{CHINESE_NAMES[k]: v for k, v in row.items()} for row in rows]
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    else:
        workbook = openpyxl.load_workbook(path)
        for cell in workbook.active[1]:
            cell.value = CHINESE_NAMES[str(cell.value)]
        workbook.save(path)
    return path


def test_every_field_has_one_chinese_name() -> None:
    fields = {*INSTITUTION_COLUMNS.order, *FINDING_COLUMNS.order}
    fields |= {"task_id", "inspected_on", "result"}  # the inspections register's
    assert fields == set(CHINESE_NAMES)
    assert len(set(CHINESE_NAMES.values())) == len(CHINESE_NAMES)


def test_chinese_headers_read_the_same_in_every_format(tmp_path: Path) -> None:
    expected = normalised(
        write(tmp_path / "i.csv", INSTITUTIONS_CSV), write(tmp_path / "f.csv", FINDINGS_CSV)
    )
    (tmp_path / "zh").mkdir()
    zh = tmp_path / "zh"
    from_csv = normalised(
        write(zh / "i.csv", in_chinese(INSTITUTIONS_CSV), bom=True),
        write(zh / "f.csv", in_chinese(FINDINGS_CSV)),
    )
    from_xlsx = normalised(
        chinese_header(write_xlsx(zh / "i.xlsx", INSTITUTIONS_CSV)),
        chinese_header(write_xlsx(zh / "f.xlsx", FINDINGS_CSV)),
    )
    from_json = normalised(
        chinese_header(write_json(zh / "i.json", INSTITUTIONS_CSV)),
        chinese_header(write_json(zh / "f.json", FINDINGS_CSV)),
    )
    for path in (zh / "i.parquet", zh / "f.parquet"):
        source = zh / path.with_suffix(".csv").name
        pq.write_table(pa.Table.from_pandas(read_table(source), preserve_index=False), path)
    from_parquet = normalised(zh / "i.parquet", zh / "f.parquet")
    for institutions, findings in (from_csv, from_xlsx, from_json, from_parquet):
        pd.testing.assert_frame_equal(institutions, expected[0])
        pd.testing.assert_frame_equal(
            findings.drop(columns="finding_id"), expected[1].drop(columns="finding_id")
        )


def test_problems_name_the_column_as_the_file_writes_it(rules: RuleSet) -> None:
    chinese = {n: CHINESE_NAMES[n] for n in FINDING_COLUMNS.order}
    raw = findings_raw([finding(occurred_on="2023-02-30"), finding(occurred_on="")])
    problems = list(
        validate_findings(
            raw.rename(columns=chinese), file="检查结果.xlsx", rules=rules, known_uscc=[code(1)]
        )[1]
    )
    assert [(p.file, p.row, p.column) for p in problems] == [
        ("检查结果.xlsx", 2, "发生日期"),
        ("检查结果.xlsx", 3, "发生日期"),
    ]
    assert "发生日期 is required" in problems[1].expected


def test_a_missing_column_of_a_chinese_file_is_named_in_chinese(rules: RuleSet) -> None:
    raw = findings_raw().drop(columns="occurred_on")
    raw = raw.rename(columns={n: CHINESE_NAMES[n] for n in raw.columns})
    problem = only(
        list(validate_findings(raw, file="f.csv", rules=rules, known_uscc=[code(1), code(2)])[1])
    )
    assert (problem.row, problem.column) == (None, "发生日期")
    assert "missing" in problem.expected


def test_a_mixed_header_row_names_the_columns_that_clash() -> None:
    raw = institutions_raw().rename(columns={"district_code": "区划代码"})
    raw["统一社会信用代码"] = raw["uscc"]
    problem = only(list(validate_institutions(raw, file="i.csv")[1]))
    assert (problem.file, problem.row, problem.column) == ("i.csv", None, None)
    assert "one language" in problem.expected
    assert "English (uscc, name, licence_no)" in problem.expected
    assert "Chinese (区划代码, 统一社会信用代码)" in problem.expected
    assert "uscc and 统一社会信用代码 name the same field" in problem.expected


def test_a_mixed_header_still_reports_the_cells(rules: RuleSet) -> None:
    raw = findings_raw([finding(count="0")]).rename(columns={"indicator": "指标", "count": "次数"})
    problems = list(validate_findings(raw, file="f.csv", rules=rules, known_uscc=[code(1)])[1])
    assert [(p.row, p.column) for p in problems] == [(None, None), (2, "次数")]


def test_a_chinese_name_of_another_table_is_no_such_column() -> None:
    raw = institutions_raw().rename(columns={n: CHINESE_NAMES[n] for n in ("uscc", "name")})
    raw["指标"] = "x"
    problems = list(validate_institutions(raw, file="i.csv")[1])
    assert any(p.column == "指标" and "no such column" in p.expected for p in problems)


def test_coded_values_may_be_written_in_chinese(rules: RuleSet) -> None:
    rows = [
        finding(source="投诉", status="撤销"),
        finding(source="检查", status="有效"),
        finding(source="penalty", status=""),
    ]
    frame, problems = validate_findings(
        findings_raw(rows), file="f.csv", rules=rules, known_uscc=[code(1)]
    )
    assert not list(problems)
    assert frame["source"].tolist() == ["complaint", "inspection", "penalty"]
    assert frame["status"].tolist() == ["revoked", "active", "active"]
    raw = institutions_raw()
    raw["status"] = ["正常", "暂停", "注销"]
    institutions, problems = validate_institutions(raw, file="i.csv")
    assert not list(problems)
    assert institutions["status"].tolist() == ["operating", "suspended", "closed"]


def test_a_wrong_chinese_value_lists_the_chinese_words_too(rules: RuleSet) -> None:
    problem = only(check_findings(rules, finding(status="作废")))
    assert "active, revoked" in problem.expected
    assert "有效、撤销" in problem.expected


def test_reading_parquet_a_column_at_a_time_reports_what_reading_it_whole_does(
    tmp_path: Path,
) -> None:
    """`read_inputs(..., keep=...)` (what `credit-rating rate` uses) reads a Parquet file a
    column at a time: every column is still checked, with the same messages, in the same order."""
    pq.write_table(
        pa.table(
            {
                "uscc": [code(1), code(2), code(2)],
                "name": ["甲", "", "丙\x00"],
                "district_code": ["120111", "12011", "120111"],
                "licence_no": ["L1", "L2", "L3"],
                "status": ["operating", "closed", "gone"],
            }
        ),
        tmp_path / "i.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "finding_id": ["a 1", "x", "x", "", "y" * 65],
                "uscc": [code(1), code(9), " " + code(1), code(1), code(1)],
                "indicator": ["licence_valid", "nope", "12", "第12项", "licence_valid"],
                "occurred_on": pa.array([dt.date(2023, 5, 17), None] * 2 + [None], pa.date32()),
                "count": pa.array([1, 0, None, 2_000_000, 3], pa.int64()),
                "source": ["检查", "bogus", "", "other", "other"],
                "reference": ["r", "r\x00", "", "", ""],
                "status": ["active", "有效", "撤销", "nah", ""],
                "note": ["", "", "\x00", "", ""],
            }
        ),
        tmp_path / "f.parquet",
    )
    paths = (tmp_path / "i.parquet", tmp_path / "f.parquet")
    with pytest.raises(InputError) as whole:
        read_inputs(*paths, rules=load_rules())
    with pytest.raises(InputError) as by_column:
        read_inputs(*paths, rules=load_rules(), keep=(("uscc",), ("uscc", "count")))
    assert str(by_column.value) == str(whole.value)
    assert by_column.value.problems == whole.value.problems
    assert by_column.value.total == whole.value.total


def test_a_parquet_file_read_a_column_at_a_time_keeps_only_what_is_asked(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "uscc": [code(1), code(2)],
                "name": NAMES[:2],
                "district_code": ["120111"] * 2,
                "licence_no": ["L1", "L2"],
            }
        ),
        tmp_path / "i.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "uscc": [code(2), code(1)],
                "indicator": ["licence_valid", "12"],
                "occurred_on": pa.array([dt.date(2023, 5, 17), dt.date(2023, 6, 1)], pa.date32()),
                "note": ["n", ""],
            }
        ),
        tmp_path / "f.parquet",
    )
    paths = (tmp_path / "i.parquet", tmp_path / "f.parquet")
    rules = load_rules()
    whole = read_inputs(*paths, rules=rules)
    kept = read_inputs(*paths, rules=rules, keep=(("uscc", "status"), ("uscc", "indicator")))
    assert list(kept[0].columns) == ["uscc", "status"]
    assert list(kept[1].columns) == ["uscc", "indicator"]
    pd.testing.assert_frame_equal(kept[0], whole[0][["uscc", "status"]])
    pd.testing.assert_frame_equal(kept[1], whole[1][["uscc", "indicator"]])


def test_finding_ids_are_shaped_exactly_as_the_regular_expression_says() -> None:
    """`_id_shapes` (bytes and lengths) against `^[^\\s\\x00]{1,64}$` (RE2) and
    `str.strip() == ""`, for every code point alone and for mixed, long and sliced ids."""
    import pyarrow.compute as pc

    from scoring.inputs import _id_shapes

    points = [chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000]
    rng = np.random.default_rng(13)
    mixed = ["", "a" * 64, "a" * 65, "é" * 64, "é" * 65, "a b", "a\x00", "\x0b", "x\u3000y"]
    mixed += ["".join(rng.choice(points[:300], size=rng.integers(0, 70))) for _ in range(2000)]
    cells = points + mixed
    chunked = pd.Series(
        pd.array(
            pa.chunked_array(
                [pa.array(cells[:7], pa.large_string()), pa.array(cells[7:], pa.large_string())]
            ),
            dtype="str",
        )
    )
    for ids in (pd.Series(cells, dtype="str"), chunked, chunked.iloc[3:].reset_index(drop=True)):
        empty, shaped = _id_shapes(ids)
        regex = pc.match_substring_regex(pa.array(ids), r"^[^\s\x00]{1,64}$")
        assert empty.tolist() == (ids.str.strip() == "").tolist()
        assert shaped.tolist() == np.asarray(regex, dtype=bool).tolist()
