"""Seeded synthetic districts of any size, for benchmarks, load tests and property checks.

The sample in `data/` has 16 institutions; the engine must also rate a whole city (or a
country-sized what-if) quickly, and tests need inputs larger than anyone would write by hand.
`synthetic_district` builds such inputs directly in the engine's normalised frame shape, with a
mix that looks like supervision data: most institutions are clean, findings pile up on a few
offenders and on the common indicators (fees, contracts, refunds, hours, scope), counts are
mostly 1–3 with a long tail, about 2% of findings are revoked, about 5% fall in the years either
side, and vetoes are rare. Credit codes are valid (GB 32100-2015) and unique by construction.

Everything is vectorised numpy (the strings are assembled as fixed-width byte matrices and handed
to Arrow without a Python loop), so 1M institutions with 10M findings take a few seconds. The
same `seed` always gives the same frames. Pure: no I/O, no global random state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from scoring.inputs import FINDING_SOURCES, FINDING_STATUSES, INSTITUTION_STATUSES
from scoring.rules import Mode, RuleSet, RulesInForce
from scoring.uscc import ALPHABET, WEIGHTS

__all__ = ["DISTRICTS", "synthetic_district"]

DISTRICTS: tuple[tuple[str, str, str, float], ...] = (
    # GB/T 2260 code, name, abbreviation used in document numbers, share of institutions
    ("120101", "和平区", "和平", 0.05),
    ("120102", "河东区", "河东", 0.06),
    ("120103", "河西区", "河西", 0.08),
    ("120104", "南开区", "南开", 0.09),
    ("120105", "河北区", "河北", 0.06),
    ("120106", "红桥区", "红桥", 0.04),
    ("120110", "东丽区", "东丽", 0.06),
    ("120111", "西青区", "西青", 0.07),
    ("120112", "津南区", "津南", 0.06),
    ("120113", "北辰区", "北辰", 0.06),
    ("120114", "武清区", "武清", 0.08),
    ("120115", "宝坻区", "宝坻", 0.05),
    ("120116", "滨海新区", "滨海", 0.13),
    ("120117", "宁河区", "宁河", 0.03),
    ("120118", "静海区", "静海", 0.05),
    ("120119", "蓟州区", "蓟州", 0.03),
)
"""Tianjin's 16 districts and roughly how the city's training institutions spread over them."""

# How often each indicator is found, relative to the others. Codes missing here (a future
# rule set) get a middling weight; all-or-nothing indicators are rare findings in practice.
INDICATOR_WEIGHTS: dict[str, float] = {
    "licence_valid": 0.3,
    "registration_valid": 0.3,
    "licence_not_lent": 0.2,
    "fees_displayed": 8,
    "venue_as_licensed": 0.6,
    "annual_inspection_passed": 0.5,
    "advertising_lawful": 3,
    "fees_per_policy": 6,
    "prepaid_fees_lawful": 5,
    "model_contract_used": 8,
    "receipts_match_contracts": 5,
    "refunds_per_contract": 9,
    "finance_rules_sound": 0.4,
    "accounting_rules_sound": 0.4,
    "asset_rules_sound": 0.4,
    "no_levies_or_fundraising": 0.1,
    "staff_managed_lawfully": 3,
    "teacher_credentials_shown": 5,
    "within_licensed_scope": 6,
    "training_hours_lawful": 7,
    "materials_approved": 3,
    "prepaid_funds_in_custody": 4,
    "venue_safe": 4,
    "teachers_qualified": 2.5,
    "no_serving_teachers": 1,
    "platform_reporting": 4,
    "no_verified_complaints": 5,
    "no_penalties": 0.3,
}
# Findings whose source follows from the indicator itself.
SOURCE_OF_INDICATOR = {
    "no_verified_complaints": "complaint",
    "platform_reporting": "platform",
    "no_penalties": "penalty",
    "annual_inspection_passed": "other",
}
SOURCES = FINDING_SOURCES
SOURCE_SHARES = (0.64, 0.22, 0.005, 0.04, 0.03, 0.065)

CLEAN_SHARE = 0.6  # institutions with no finding at all, in any year
REVOKED_SHARE = 0.02
OTHER_YEAR_SHARE = 0.05  # half the year before, half the year after
VETO_SHARE = 5e-6  # of findings
INSPECTION_TASKS = 12  # per district and year
PENALTY_NUMBERS = 30  # per district and year
WORK_ORDERS_A_DAY = 100  # 12345 hotline work orders about training a day, city-wide
REVOKED_NOTE = "机构提出异议，经复核异议成立，撤销该项认定"

NAME_WORDS = [
    "启航",
    "明德",
    "博文",
    "睿学",
    "知行",
    "育才",
    "致远",
    "书香",
    "乐学",
    "青禾",
    "弘毅",
    "鸿儒",
    "晨曦",
    "文苑",
    "澄明",
    "思齐",
    "笃行",
    "尚学",
    "求是",
    "明远",
    "立达",
    "崇文",
    "新叶",
    "星火",
    "远志",
    "春晖",
    "格致",
    "博雅",
    "慧思",
    "卓然",
    "润泽",
    "嘉言",
    "怀瑾",
    "正心",
    "启智",
    "和雅",
    "行知",
    "悦读",
    "墨香",
    "精进",
]
NAME_KINDS = ("文化培训学校", "培训学校", "教育培训学校", "文化培训中心")
ROADS = [
    "文华路",
    "明理道",
    "春晖路",
    "知景道",
    "育才道",
    "星河路",
    "锦华里",
    "嘉禾道",
    "弘文道",
    "汇贤路",
    "青远路",
    "文苑路",
    "澄明道",
    "思齐路",
    "柳韵道",
    "学府路",
    "聚贤道",
    "翰林路",
    "兴华道",
    "秀水路",
    "长青道",
    "和顺路",
    "福安道",
    "新城路",
]
HOUSE_NUMBERS = 200
STATUSES = INSTITUTION_STATUSES
STATUS_SHARES = (0.96, 0.03, 0.01)

_BODY_SPACE = 31**7  # the 7 free characters after "MJ" in the organisation code part
_TABLE_BITS = 20  # resolution of the categorical draws (1/1,048,576)


def synthetic_district(
    n_institutions: int,
    n_findings: int,
    *,
    year: int,
    seed: int,
    rules: RuleSet | RulesInForce,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random district of `n_institutions` and `n_findings`, rated for `year` by `rules`.

    Returns (institutions, findings) in the shape `scoring.inputs.validate` normalises input to:
    text columns as pandas `str` ("" for an empty optional cell), `occurred_on` as
    datetime64[us] at midnight, `count` as int64, RangeIndex. The same arguments always
    return equal frames.
    """
    if n_institutions < 1 or n_findings < 0:
        raise ValueError("need at least one institution and a non-negative number of findings")
    if n_institutions > _BODY_SPACE:
        raise ValueError(f"at most {_BODY_SPACE} institutions have distinct synthetic codes")
    force = rules if isinstance(rules, RulesInForce) else rules.in_force(year)
    rng = np.random.default_rng(seed)
    institutions, codes, district = _institutions(rng, n_institutions)
    findings = _findings(rng, force, codes, district, n_findings, year)
    return institutions, findings


# ---------------------------------------------------------------------------- institutions


def _institutions(
    rng: np.random.Generator, n: int
) -> tuple[pd.DataFrame, Any, npt.NDArray[np.intp]]:
    """The institution frame, its credit codes as an Arrow array, and each one's district."""
    district = _draw(rng, [d[3] for d in DISTRICTS], n)
    district_digits = np.frombuffer("".join(d[0] for d in DISTRICTS).encode(), np.uint8)
    district_digits = district_digits.reshape(len(DISTRICTS), 6)[district]

    # A seeded affine bijection of 0..31^7-1 turns the row number into a unique, scattered body.
    a = int(rng.integers(1, _BODY_SPACE)) // 31 * 31 + 1  # coprime with 31^7
    b = int(rng.integers(0, _BODY_SPACE))
    body = (np.arange(n, dtype=np.int64) * a + b) % _BODY_SPACE
    values = np.empty((n, 17), dtype=np.int64)
    values[:, 0], values[:, 1] = 5, 2
    values[:, 2:8] = district_digits - ord("0")
    values[:, 8], values[:, 9] = ALPHABET.index("M"), ALPHABET.index("J")
    for j in range(7):
        values[:, 16 - j] = body % 31
        body //= 31
    check = (31 - (values @ np.array(WEIGHTS, dtype=np.int64)) % 31) % 31
    alphabet = np.frombuffer(ALPHABET.encode(), np.uint8)
    uscc = np.empty((n, 18), dtype=np.uint8)
    uscc[:, :17] = alphabet[values]
    uscc[:, 17] = alphabet[check]

    # 教民 1 <district> 7 <serial within the district, 6+ digits> 号
    serial = _rank_within(district, len(DISTRICTS))
    width = max(6, len(str(int(serial.max()))))
    licence = _concat(
        n, "教民1".encode(), district_digits, b"7", _digits(serial, width), "号".encode()
    )

    names = np.array(
        [f"天津市{d[1]}{w}{k}" for d in DISTRICTS for w in NAME_WORDS for k in NAME_KINDS],
        dtype=object,
    )
    name = (district * len(NAME_WORDS) + rng.integers(0, len(NAME_WORDS), n)) * len(
        NAME_KINDS
    ) + rng.integers(0, len(NAME_KINDS), n)
    addresses = np.array(
        [
            f"天津市{d[1]}{r}{h}号"
            for d in DISTRICTS
            for r in ROADS
            for h in range(1, HOUSE_NUMBERS + 1)
        ],
        dtype=object,
    )
    address = (district * len(ROADS) + rng.integers(0, len(ROADS), n)) * HOUSE_NUMBERS + (
        rng.integers(0, HOUSE_NUMBERS, n)
    )
    codes = _fixed_width(uscc)
    frame = pd.DataFrame(
        {
            "uscc": _str(codes),
            "name": _str(_take(names, name)),
            "district_code": _str(_take(np.array([d[0] for d in DISTRICTS]), district)),
            "licence_no": _str(_fixed_width(licence)),
            "address": _str(_take(addresses, address)),
            "status": _str(_take(np.array(STATUSES), _draw(rng, STATUS_SHARES, n))),
        }
    )
    return frame, codes, district


# ---------------------------------------------------------------------------- findings


def _findings(
    rng: np.random.Generator,
    force: RulesInForce,
    uscc: Any,
    district_of: npt.NDArray[np.intp],
    m: int,
    year: int,
) -> pd.DataFrame:
    n = len(uscc)
    # When: records are kept in the order they were made, so draw how many fall on each day of
    # a three-year window (sorted by construction); ~5% fall in the year before or after.
    start = np.datetime64(f"{year - 1:04d}-01-01")
    first, after, end = (
        int((np.datetime64(f"{y:04d}-01-01") - start).astype(np.int64))
        for y in (year, year + 1, year + 2)
    )
    per_day = np.concatenate(
        [
            np.full(first, OTHER_YEAR_SHARE / 2 / first),
            np.full(after - first, (1 - OTHER_YEAR_SHARE) / (after - first)),
            np.full(end - after, OTHER_YEAR_SHARE / 2 / (end - after)),
        ]
    )
    day = np.repeat(np.arange(end, dtype=np.int16), rng.multinomial(m, per_day))
    year_of = (day >= first).astype(np.intp) + (day >= after)  # 0, 1, 2 = year-1, year, year+1

    # Who: a clean majority, and offenders whose findings follow a heavy-tailed propensity.
    offenders = np.flatnonzero(rng.random(n) >= CLEAN_SHARE)
    if offenders.size == 0:
        offenders = np.array([rng.integers(0, n)])
    propensity = rng.lognormal(0.0, 1.0, offenders.size)
    resolution = max(1 << 22, 16 * offenders.size)
    who = offenders[_draw(rng, propensity, m, resolution)]

    # What: indicators by how often they are found; a rare veto now and then.
    codes = [i.code for i in force.indicators]
    weights = [
        INDICATOR_WEIGHTS.get(i.code, 1.0 if i.rule.mode is Mode.PER else 0.3)
        for i in force.indicators
    ]
    what = _draw(rng, weights, m)
    if force.vetoes:
        vetoed = np.flatnonzero(rng.random(m) < VETO_SHARE)
        what[vetoed] = len(codes) + rng.integers(0, len(force.vetoes), vetoed.size)
    all_codes = codes + [v.code for v in force.vetoes]
    single = np.array(
        [i.rule.mode is Mode.ALL for i in force.indicators] + [True] * len(force.vetoes)
    )

    # How many: mostly 1-3, a long tail; all-or-nothing findings and vetoes count once.
    count = rng.geometric(0.6, m).astype(np.int64)
    tail = np.flatnonzero(rng.random(m) < 0.01)
    count[tail] += np.minimum(rng.zipf(2.0, tail.size), 100)
    count[single[what]] = 1

    # Where from: mostly inspections and complaints; some indicators imply their source.
    forced = np.full(len(all_codes), -1, dtype=np.intp)
    for code, src in SOURCE_OF_INDICATOR.items():
        if code in all_codes:
            forced[all_codes.index(code)] = SOURCES.index(src)
    source = forced[what]
    source = np.where(source >= 0, source, _draw(rng, SOURCE_SHARES, m))
    revoked = rng.random(m) < REVOKED_SHARE

    occurred = (start + day.astype("timedelta64[D]")).astype("datetime64[us]")
    return pd.DataFrame(
        {
            "finding_id": _str(_finding_ids(year, year_of)),
            "uscc": _str(uscc.take(pa.array(who))),
            "indicator": _str(_take(np.array(all_codes), what)),
            "occurred_on": occurred,
            "count": count,
            "source": _str(_take(np.array(SOURCES), source)),
            "reference": _str(
                _references(rng, source, district_of[who], year_of, year, day, start)
            ),
            "status": _str(_take(np.array(FINDING_STATUSES), revoked.astype(np.intp))),
            "note": _str(_take(np.array(["", REVOKED_NOTE]), revoked.astype(np.intp))),
        }
    )


def _finding_ids(year: int, year_of: npt.NDArray[np.intp]) -> Any:
    """SY-<year>-<serial>: serials run over the whole frame, so ids are unique."""
    m = len(year_of)
    width = max(8, len(str(m)))
    prefixes = np.frombuffer(
        "".join(f"SY-{y}-" for y in (year - 1, year, year + 1)).encode(), np.uint8
    ).reshape(3, -1)
    return _fixed_width(_concat(m, prefixes[year_of], _digits(np.arange(1, m + 1), width)))


def _references(
    rng: np.random.Generator,
    source: npt.NDArray[np.intp],
    district: npt.NDArray[np.intp],
    year_of: npt.NDArray[np.intp],
    year: int,
    day: npt.NDArray[np.int16],
    start: np.datetime64,
) -> Any:
    """Task numbers for inspections, decision numbers for penalties, work orders for complaints.

    All are drawn from one table of labels and gathered in one Arrow `take`: a district has a
    dozen tasks and a few dozen decisions a year, and a hotline work order (one a day per
    number) may lead to several findings, as complaints do.
    """
    m = len(source)
    years = (year - 1, year, year + 1)
    tasks = [
        f"{d[2]}教查〔{y}〕{k}号"
        for d in DISTRICTS
        for y in years
        for k in range(1, INSPECTION_TASKS + 1)
    ]
    decisions = [
        f"{d[2]}教罚〔{y}〕{k}号"
        for d in DISTRICTS
        for y in years
        for k in range(1, PENALTY_NUMBERS + 1)
    ]
    days = np.datetime_as_string(start + np.arange(int(day.max(initial=0)) + 1), unit="D")
    orders = [
        f"12345热线工单{d.replace('-', '')}{k:04d}"
        for d in days.tolist()
        for k in range(1, WORK_ORDERS_A_DAY + 1)
    ]
    labels = np.array(["", *tasks, *decisions, *orders], dtype=object)
    slot = district * 3 + year_of
    pick = np.zeros(m, dtype=np.intp)  # "" for sources without a document number
    for code, first, per_slot, per_row in (
        ("inspection", 1, INSPECTION_TASKS, slot),
        ("penalty", 1 + len(tasks), PENALTY_NUMBERS, slot),
        ("complaint", 1 + len(tasks) + len(decisions), WORK_ORDERS_A_DAY, day),
    ):
        rows = np.flatnonzero(source == SOURCES.index(code))
        at = per_row[rows].astype(np.intp)
        pick[rows] = first + at * per_slot + rng.integers(0, per_slot, rows.size)
    return _take(labels, pick)


# ---------------------------------------------------------------------------- helpers


def _draw(
    rng: np.random.Generator, shares: Any, size: int, resolution: int = 1 << 20
) -> npt.NDArray[np.intp]:
    """Categorical draw by table look-up: much faster than `rng.choice(p=...)` on 10M rows.

    Each category gets a share of `resolution` table slots, so shares are exact to within
    1/resolution (a category with less than that may never be drawn).
    """
    p = np.asarray(shares, dtype=np.float64)
    edges = np.round(np.cumsum(p / p.sum()) * resolution).astype(np.int64)
    table = np.repeat(np.arange(len(p), dtype=np.int32), np.diff(edges, prepend=0))
    return table[rng.integers(0, len(table), size, dtype=np.uint32)].astype(np.intp)


def _rank_within(group: npt.NDArray[np.intp], n_groups: int) -> npt.NDArray[np.int64]:
    """1-based serial of each row within its group, in row order."""
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(group, minlength=n_groups))[:-1]])
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - starts[group[order]] + 1
    return rank


_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), np.uint16)
"""The two ASCII digits of 0..99, each pair read as one uint16 (so one gather writes both)."""


def _digits(values: npt.ArrayLike, width: int) -> npt.NDArray[np.uint8]:
    """ASCII decimal digits of non-negative integers, zero-padded: an (n, width) byte matrix."""
    v = np.asarray(values, dtype=np.int64)
    v = v.astype(np.uint32) if v.size and v.max() < 1 << 32 else v.copy()
    pairs = -(-width // 2)
    out = np.empty((len(v), pairs), dtype=np.uint16)
    for j in range(pairs - 1, -1, -1):  # two digits per pass, right to left
        v, pair = np.divmod(v, 100)
        out[:, j] = _PAIRS[pair]
    return out.view(np.uint8)[:, 2 * pairs - width :]


def _concat(n: int, *parts: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Row-wise concatenation of constant byte strings and (n, w) byte matrices."""
    widths = [len(p) if isinstance(p, bytes) else p.shape[1] for p in parts]
    out = np.empty((n, sum(widths)), dtype=np.uint8)
    at = 0
    for part, w in zip(parts, widths, strict=True):
        out[:, at : at + w] = np.frombuffer(part, np.uint8) if isinstance(part, bytes) else part
        at += w
    return out


def _fixed_width(matrix: npt.NDArray[np.uint8]) -> Any:
    """An Arrow string array over the rows of a UTF-8 byte matrix, without copying the bytes."""
    n, width = matrix.shape
    offsets = np.arange(0, n * width + 1, width, dtype=np.int64)
    data = np.ascontiguousarray(matrix)
    return pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _take(
    labels: npt.NDArray[Any], index: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None = None
) -> Any:
    """labels[index] as an Arrow string array (null where not `valid`), gathered in C++."""
    positions = pa.array(index.astype(np.int32), mask=None if valid is None else ~valid)
    return pa.array(labels.astype(object), pa.large_string()).take(positions)


def _str(array: Any) -> pd.api.extensions.ExtensionArray:
    """Wrap an Arrow string array as pandas' default `str` dtype (no copy)."""
    return pd.array(array, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
