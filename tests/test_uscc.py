"""Credit codes against answers from outside the project: real codes, python-stdnum, hand work.

`scoring.uscc` (one code) and `scoring.uscc_columns` (a column) must accept every real code,
refuse a code whose structure is wrong naming the position (GB 32100-2015), and only warn
about a division differing from `district_code` or a failing GB 11714 organisation code.
No expected value here is computed with the project's own functions.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stdnum.cn import uscc as stdnum_uscc

from scoring import uscc, uscc_columns
from scoring.errors import InputError
from scoring.inputs import Checked, validate, validate_institutions
from scoring.problems import MAX_PROBLEMS, ProblemList
from scoring.shipped import load_rules

REAL_CODES = [
    line.strip()
    for line in (Path(__file__).parent / "data" / "uscc_real_codes.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015, written out: no I, O, S, V, Z


def with_check(first17: str) -> str:
    """A code completed by python-stdnum's check character (not ours)."""
    return first17 + stdnum_uscc.calc_check_digit(first17)


def random_codes(seed: int, n: int, head: str = "") -> list[str]:
    """`n` codes with a right check character (python-stdnum's): random after `head`."""
    rng = random.Random(seed)
    return [
        with_check(head + "".join(rng.choice(ALPHABET) for _ in range(17 - len(head))))
        for _ in range(n)
    ]


# --- real codes and known answers -----------------------------------------------------------


def test_the_list_of_real_codes_is_complete() -> None:
    assert len(REAL_CODES) == 383
    assert len(set(REAL_CODES)) == 383
    assert all(stdnum_uscc.is_valid(code) for code in REAL_CODES)


def test_every_real_code_is_accepted_one_by_one() -> None:
    refused = {code: uscc.problem(code) for code in REAL_CODES if not uscc.is_valid(code)}
    assert refused == {}


def test_every_real_code_is_accepted_as_a_column() -> None:
    assert uscc_columns.valid(pd.Series(REAL_CODES, dtype="str")).all()


def test_every_real_code_passes_the_organisation_code_check() -> None:
    """GB 11714 holds for every real code, letters (A=10 … Z=35) and X and 0 checks included."""
    assert [c for c in REAL_CODES if uscc.organisation_code_problem(c)] == []
    assert uscc.warnings(REAL_CODES[1]) == []
    assert uscc_columns.organisation_valid(pd.Series(REAL_CODES, dtype="str")).all()


def test_check_characters_of_real_codes() -> None:
    """The 18th character of real codes, as published, is what we compute."""
    for code in REAL_CODES:
        assert uscc.check_character(code[:17]) == code[17], code


@pytest.mark.parametrize(
    ("first17", "check"),
    [
        ("91110000600037341", "L"),  # python-stdnum's own example
        ("12120000401359081", "6"),  # a 机构编制 (department 1) code
        ("91620105L01510128", "0"),  # organisation code starting with a letter
        ("9144030071526726X", "G"),  # organisation code checked X
        ("YUYU122BT5PRMU98K", "7"),  # the reported code: its check character is right
    ],
)
def test_check_character_known_answers(first17: str, check: str) -> None:
    assert stdnum_uscc.calc_check_digit(first17) == check  # the answer is not ours
    assert uscc.check_character(first17) == check


@pytest.mark.parametrize(
    ("body", "check"),
    [
        # Worked by hand: 6·3 + 0·7 + 0·9 + 0·10 + 3·5 + 7·8 + 3·4 + 4·2 = 109;
        # 109 mod 11 = 10; 11 − 10 = 1.
        ("60003734", "1"),
        # 0·3 + 7·7 + 8·9 + 3·10 + 7·5 + 7·8 + 5·4 + 7·2 = 276; 276 mod 11 = 1; 11 − 1 = 10 → X.
        ("07837757", "X"),
        # M=22, A=10, 2, P=25, B=11, N=23, F=15, H=17:
        # 66 + 70 + 18 + 250 + 55 + 184 + 60 + 34 = 737 = 67·11; 11 − 0 = 11 → 0.
        ("MA2PBNFH", "0"),
    ],
)
def test_organisation_check_character_worked_by_hand(body: str, check: str) -> None:
    assert uscc.organisation_check_character(body) == check


# --- the structure: refused, naming the position ----------------------------------------------


def test_the_reported_code_is_refused_naming_position_2() -> None:
    code = "YUYU122BT5PRMU98K7"
    assert not uscc.is_valid(code)
    assert not uscc_columns.valid([code])[0]
    problem = uscc.problem(code)
    assert problem is not None
    assert "position 2" in problem and "'U'" in problem


@pytest.mark.parametrize(
    ("first17", "position"),
    [
        ("01110000600037341", "position 1"),  # 0 is no registration department
        ("B1110000600037341", "position 1"),
        ("9A110000600037341", "position 2"),  # the category is a digit
        ("91A10000600037341", "position 3"),  # positions 3–8: the division, six digits
        ("911100Y0600037341", "position 7"),
        ("9111000Y600037341", "position 8"),
    ],
)
def test_a_broken_structure_is_refused_naming_the_position(first17: str, position: str) -> None:
    code = with_check(first17)  # the check character is right: only the structure is wrong
    assert not uscc.is_valid(code)
    assert not uscc_columns.valid([code])[0]
    problem = uscc.problem(code)
    assert problem is not None and position in problem, problem


@pytest.mark.parametrize("department", list("123456789ANY"))
def test_every_registration_department_is_accepted(department: str) -> None:
    code = with_check(department + "1120111MJ0627485")
    assert uscc.is_valid(code)
    assert uscc_columns.valid([code])[0]


def test_characters_outside_the_alphabet_are_named_with_their_position() -> None:
    problem = uscc.problem("91110000600O37341L")
    assert problem is not None and "'O' at position 12" in problem


def test_a_wrong_check_character_says_which_is_right() -> None:
    problem = uscc.problem("91110000600037341N")
    assert problem is not None and "should be 'L'" in problem


# --- against python-stdnum ------------------------------------------------------------------


def expected_by_stdnum(code: str) -> bool:
    """python-stdnum's verdict, adjusted where GB 32100-2015 and stdnum differ on position 1.

    stdnum wants positions 1–8 to be digits: it accepts department 0 (none such in the
    standard) and refuses departments A, N and Y (中央军委改革和编制办公室, 农业, 其他).
    """
    if code[0] == "0":
        return False
    if code[0] in "ANY" and code[1:8].isdigit():
        return bool(stdnum_uscc.calc_check_digit(code[:17]) == code[17])
    return bool(stdnum_uscc.is_valid(code))


def test_random_check_valid_strings_agree_with_stdnum() -> None:
    codes = random_codes(2, 20_000)
    stdnum_accepts = [c for c in codes if stdnum_uscc.is_valid(c)]
    assert len(stdnum_accepts) == 1  # '0302605502X81K987D': department 0, which we refuse
    ours = [uscc.is_valid(c) for c in codes]
    assert ours == [expected_by_stdnum(c) for c in codes]
    assert uscc_columns.valid(pd.Series(codes, dtype="str")).tolist() == ours
    # Departments N and A with a six-digit division: GB 32100-2015 codes stdnum refuses.
    accepted = [c for c, ok in zip(codes, ours, strict=True) if ok]
    assert accepted == [
        "N69481888LGYKGK0U6",
        "A0859201TXTYFHUNUC",
        "A9094434175N0LHLJC",
        "A9977881DL92B9HB1C",
    ]


def test_random_structured_codes_agree_with_stdnum() -> None:
    """Positions 1–8 digits: stdnum accepts all; we accept all but department 0."""
    rng = random.Random(3)
    heads = ["".join(rng.choice("0123456789") for _ in range(8)) for _ in range(20_000)]
    codes = [random_codes(i, 1, head)[0] for i, head in enumerate(heads)]
    assert all(stdnum_uscc.is_valid(c) for c in codes)
    ours = [uscc.is_valid(c) for c in codes]
    assert ours == [c[0] != "0" for c in codes]
    assert uscc_columns.valid(pd.Series(codes, dtype="str")).tolist() == ours


def test_one_character_changed_in_a_real_code_agrees_with_stdnum() -> None:
    """Every single-character change of some real codes: a typo is refused as stdnum does."""
    codes = []
    for code in REAL_CODES[::40]:
        for i in range(18):
            codes += [code[:i] + ch + code[i + 1 :] for ch in ALPHABET if ch != code[i]]
    ours = [uscc.is_valid(c) for c in codes]
    assert ours == [expected_by_stdnum(c) for c in codes]
    assert uscc_columns.valid(pd.Series(codes, dtype="str")).tolist() == ours
    organisation = uscc_columns.organisation_valid(pd.Series(codes, dtype="str")).tolist()
    assert organisation == [uscc.organisation_code_problem(c) is None for c in codes]


def test_synthetic_and_sample_codes_have_the_structure() -> None:
    sample = pd.read_csv(Path(__file__).parents[1] / "data" / "institutions.csv", dtype=str)
    assert all(stdnum_uscc.is_valid(c) for c in sample["uscc"])
    assert uscc_columns.valid(sample["uscc"]).all()
    assert (uscc_columns.registered_in(sample["uscc"], sample["district_code"])).all()


# --- warnings, not refusals -----------------------------------------------------------------


def institutions(codes: list[str], districts: list[str]) -> pd.DataFrame:
    n = len(codes)
    return pd.DataFrame(
        {
            "uscc": codes,
            "name": [f"机构{i}" for i in range(n)],
            "district_code": districts,
            "licence_no": [f"L{i}" for i in range(n)],
        },
        index=pd.RangeIndex(2, n + 2),  # spreadsheet rows: header = row 1
        dtype="str",
    )


# Real codes whose organisation code passes GB 11714; and a copy of the first whose organisation
# code is mistyped (60003735 for 60003734: by hand, 111 mod 11 = 1, so its check would be X)
# with the outer check character recomputed by stdnum.
BEIJING, TIANJIN = "91110000600037341L", "91120224064012553U"
MISTYPED = with_check("91110000600037351")


def test_a_division_other_than_the_district_is_a_warning_not_a_problem() -> None:
    raw = institutions([BEIJING, TIANJIN], ["120111", "120224"])
    frame, problems = validate_institutions(raw, file="i.csv")
    assert list(problems) == [] and problems.total == 0
    assert isinstance(problems, Checked) and isinstance(problems, ProblemList)
    [warning] = problems.warnings
    assert (warning.file, warning.row, warning.column, warning.value) == (
        "i.csv",
        2,
        "uscc",
        BEIJING,
    )
    assert "positions 3–8 (110000" in warning.expected and "120111" in warning.expected
    assert problems.warnings.total == 1
    assert list(frame["uscc"]) == [BEIJING, TIANJIN]


def test_a_failing_organisation_code_is_a_warning_not_a_problem() -> None:
    assert uscc.is_valid(MISTYPED)
    assert uscc.organisation_code_problem(MISTYPED) is not None
    raw = institutions([MISTYPED, TIANJIN], ["110000", "120224"])
    _, problems = validate_institutions(raw, file="i.csv")
    assert list(problems) == []
    [warning] = problems.warnings
    assert (warning.row, warning.value) == (2, MISTYPED)
    assert "GB 11714" in warning.expected and "would be 'X'" in warning.expected


def test_both_warnings_on_one_row_and_none_on_refused_rows() -> None:
    wrong_check = BEIJING[:-1] + "N"
    raw = institutions([MISTYPED, wrong_check, "52120111MJ0627485"], ["120111"] * 3)
    _, problems = validate_institutions(raw, file="i.csv")
    assert [p.row for p in problems] == [3, 4]  # the refused codes: no warnings about them
    assert [w.row for w in problems.warnings] == [2, 2]
    assert problems.warnings.total == 2
    assert "positions 3–8" in problems.warnings[0].expected
    assert "GB 11714" in problems.warnings[1].expected


def test_warnings_are_capped_and_counted() -> None:
    n = MAX_PROBLEMS + 5
    raw = institutions([BEIJING] * n, ["120111"] * n)
    raw["uscc"] = random_codes(5, n, head="91110000")  # unique, valid, most fail GB 11714
    _, problems = validate_institutions(raw, file="i.csv")
    assert list(problems) == []
    assert len(problems.warnings) == MAX_PROBLEMS
    failing = sum(uscc.organisation_code_problem(c) is not None for c in raw["uscc"])
    assert problems.warnings.total == n + failing


def test_validate_hands_warnings_to_a_caller_that_asks() -> None:
    rules = load_rules()
    findings = pd.DataFrame(
        {"uscc": [TIANJIN], "indicator": ["fees_displayed"], "occurred_on": ["2023-05-01"]},
        index=[2],
        dtype="str",
    )
    raw = institutions([BEIJING, TIANJIN], ["120111", "120224"])

    def check(
        findings: pd.DataFrame, warnings: ProblemList | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return validate(
            raw,
            findings,
            rules=rules,
            institutions_file="i.csv",
            findings_file="f.csv",
            warnings=warnings,
        )

    check(findings)  # without a list: as before
    warnings = ProblemList()
    institutions_frame, findings_frame = check(findings, warnings)
    assert [(w.file, w.row) for w in warnings] == [("i.csv", 2)] and warnings.total == 1
    assert len(institutions_frame) == 2 and len(findings_frame) == 1
    # Warnings are collected even when problems refuse the input.
    bad = findings.assign(indicator="nonsense")
    warnings = ProblemList()
    with pytest.raises(InputError):
        check(bad, warnings)
    assert warnings.total == 1


def test_warnings_stay_vectorised_for_many_rows() -> None:
    """100,000 institutions: masks over the column, messages only for listed rows."""
    n = 100_000
    codes = pd.Series(random_codes(6, 2000, head="52120111"), dtype="str")
    many = pd.Series(np.resize(codes.to_numpy(), n), dtype="str")
    ok = uscc_columns.organisation_valid(many)
    assert (
        ok.tolist()
        == np.resize([uscc.organisation_code_problem(c) is None for c in codes], n).tolist()
    )


def test_an_import_reports_its_warnings_and_stores_all_the_same(tmp_path: Path) -> None:
    """`credit-rating import` prints each warning on stderr; the import stores everything."""
    from typer.testing import CliRunner

    from service.cli.commands import app

    raw = institutions([BEIJING, MISTYPED], ["120111", "110000"])
    path = tmp_path / "institutions.csv"
    raw.to_csv(path, index=False)
    env = {"CREDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    result = CliRunner().invoke(app, ["import", str(path)], env=env)
    assert result.exit_code == 0, result.stderr
    assert "institutions: 2 added" in result.stdout
    text = " ".join(result.stderr.split())  # the console may wrap long lines
    warnings = text.split("warning: ")[1:]
    assert len(warnings) == 2, result.stderr
    assert "row 2, column uscc" in warnings[0] and "district_code 120111" in warnings[0]
    assert "row 3, column uscc" in warnings[1] and "GB 11714" in warnings[1]


def test_refused_districts_and_stripped_codes() -> None:
    """A refused district_code is its own problem, not also a warning; a code with spaces
    around it is accepted stripped and warned about as stored."""
    raw = institutions([BEIJING, f" {MISTYPED} "], ["1201", "110000"])
    _, problems = validate_institutions(raw, file="i.csv")
    assert [(p.row, p.column) for p in problems] == [(2, "district_code")]
    assert [(w.row, w.value) for w in problems.warnings] == [(3, MISTYPED)]  # as stored
    assert "GB 11714" in problems.warnings[0].expected


def test_codes_matched_against_an_empty_list_are_all_absent() -> None:
    """A district whose every institution is closed leaves nothing to match findings to."""
    from scoring.uscc_columns import positions

    assert positions(["52120111MJ0627485A", "short"], []).tolist() == [-1, -1]
    assert positions([], []).tolist() == []
