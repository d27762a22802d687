"""The random-inspection draw (双随机): the sampling procedure, and draws stored, published and
rerun from their published record, on SQLite and on PostgreSQL.

The rerun (`rerun_by_hand`) is written from docs/draws.md with hashlib and fractions only; it
does not import `scoring.draw`, so a change to the procedure that the documentation does not
follow fails here.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from scoring.draw import ALL, DrawError, allocate, draw, parse_weights, ranking_key
from scoring.shipped import load_rules
from service.api.app import create_app
from service.cli import app as cli
from service.core.database import reading, writing
from service.core.errors import InvalidInput, NotFound
from service.core.migrate import upgrade
from service.core.settings import Settings
from service.core.tables import findings, institutions
from service.ratings import draws, publishing
from tests.conftest import Keys

RULES = load_rules()
WEIGHTS = parse_weights("A=0.5,B=0.75,C=1,D=2,E=all")
CLOSED = "52120111MJ0529640X"  # 育才, an A of 2023: closed in these tests
NOW = datetime(2024, 3, 1, tzinfo=UTC)


def population(sizes: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"U{grade}{i:05d}", grade) for grade, n in sizes.items() for i in range(n)]


# The procedure, by hand (docs/draws.md) -----------------------------------------------------


def rerun_by_hand(record: dict[str, Any]) -> list[dict[str, str]]:
    """A published draw's list, from its JSON only, following docs/draws.md step by step."""
    assert record["procedure"] == "sha256-largest-remainder-v1"
    seed, count = record["seed"], record["count"]
    members: dict[str, list[str]] = {}
    for uscc, grade in record["population"]:
        members.setdefault(grade, []).append(uscc)
    grades = sorted(members)
    weights = record["weights"]
    quota = {g: 0 for g in grades}
    for g in grades:  # step 1: `all` grades whole
        if weights[g] == "all":
            quota[g] = len(members[g])
    seats = max(0, count - sum(quota.values()))
    rest = [g for g in grades if weights[g] != "all" and Fraction(weights[g]) > 0]
    seats = min(seats, sum(len(members[g]) for g in rest))
    while rest and seats:  # step 2: shares, grades reaching their size drawn whole
        total = sum(Fraction(weights[g]) * len(members[g]) for g in rest)
        share = {g: seats * Fraction(weights[g]) * len(members[g]) / total for g in rest}
        full = [g for g in rest if share[g] >= len(members[g])]
        if full:
            for g in full:
                quota[g] = len(members[g])
                seats -= len(members[g])
            rest = [g for g in rest if g not in full]
            continue
        for g in rest:
            quota[g] = share[g].numerator // share[g].denominator
        left = seats - sum(quota[g] for g in rest)
        fraction = {g: share[g] - quota[g] for g in rest}
        for g in sorted(rest, key=lambda g: (-fraction[g], g))[:left]:
            quota[g] += 1
        break
    drawn = []
    for g in grades:  # step 3: sha256("seed:uscc"), smallest first
        keyed = sorted((hashlib.sha256(f"{seed}:{u}".encode()).hexdigest(), u) for u in members[g])
        drawn += [{"uscc": u, "grade": g, "key": k} for k, u in keyed[: quota[g]]]
    return drawn


# Pure ---------------------------------------------------------------------------------------


def test_per_grade_counts_follow_weight_times_size_by_largest_remainder() -> None:
    sizes = {"A": 40, "B": 30, "C": 20, "D": 10}
    result = draw(population(sizes), weights=WEIGHTS, count=30, seed="s")
    # shares of 30 in proportion to 20 : 22.5 : 20 : 20 (weight × size), total 82.5:
    # A 7.27, B 8.18, C 7.27, D 7.27 → 7, 8, 7, 7 and the 1 seat left to the largest
    # remainder, A's 0.2727… (first in the alphabet among the equal remainders of A, C, D)
    assert result.quotas == {"A": 8, "B": 8, "C": 7, "D": 7}
    assert len(result.drawn) == 30
    for grade, n in result.quotas.items():
        assert sum(d.grade == grade for d in result.drawn) == n
    # per institution, a D is drawn 4 times as often as an A, a C twice
    rate = {g: Fraction(result.quotas[g], sizes[g]) for g in sizes}
    assert rate["A"] < rate["B"] < rate["C"] < rate["D"]


def test_a_grade_whose_share_exceeds_its_size_is_drawn_whole_and_the_rest_shared_again() -> None:
    quotas = allocate(
        {"A": 50, "C": 10, "D": 2}, {"A": Fraction(1, 2), "C": Fraction(1), "D": Fraction(2)}, 20
    )
    # D's share, 20 × 4/39 = 2.05, exceeds its 2: both drawn; 18 left for 25 : 10
    assert quotas == {"A": 13, "C": 5, "D": 2}


def test_e_is_always_drawn_whole_and_a_zero_weight_never() -> None:
    weights = {**WEIGHTS, "A": Fraction(0)}
    result = draw(population({"A": 5, "C": 5, "E": 3}), weights=weights, count=4, seed="x")
    assert result.quotas == {"A": 0, "C": 1, "E": 3}
    many = draw(population({"A": 5, "E": 3}), weights=weights, count=2, seed="x")
    assert many.quotas == {"A": 0, "E": 3}, "every E, even beyond the count"
    everyone = draw(population({"B": 2, "C": 3}), weights=WEIGHTS, count=99, seed="x")
    assert everyone.quotas == {"B": 2, "C": 3}


def test_same_seed_same_list_and_different_seeds_different_lists() -> None:
    people = population({"A": 60, "B": 30, "C": 20, "D": 10})
    first = draw(people, weights=WEIGHTS, count=12, seed="西青-2024")
    again = draw(list(reversed(people)), weights=WEIGHTS, count=12, seed="西青-2024")
    assert first == again
    lists = {
        tuple(d.uscc for d in draw(people, weights=WEIGHTS, count=12, seed=f"s{i}").drawn)
        for i in range(30)
    }
    assert len(lists) == 30


def test_the_ranking_key_is_what_sha256sum_prints() -> None:
    printed = subprocess.run(
        ["sh", "-c", "printf '%s' 'abc123:52120111MJ0627485A' | sha256sum"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert ranking_key("abc123", "52120111MJ0627485A") == printed


def test_weights_are_read_exactly_and_bad_ones_refused() -> None:
    assert parse_weights("A=0.1, B=1/3 ,E=ALL") == {
        "A": Fraction(1, 10),
        "B": Fraction(1, 3),
        "E": ALL,
    }
    for bad in ["", "A", "A=x", "A=-1", "A=1,A=2", "=1"]:
        with pytest.raises(DrawError):
            parse_weights(bad)
    with pytest.raises(DrawError, match="no draw weight for grade F"):
        draw([("U1", "F")], weights=WEIGHTS, count=1, seed="s")


grade_sizes = st.dictionaries(st.sampled_from("ABCDE"), st.integers(0, 40), min_size=1)
weight_maps = st.fixed_dictionaries(
    {g: st.fractions(min_value=0, max_value=5, max_denominator=8) for g in "ABCD"}
).map(lambda w: {**w, "E": ALL})


@settings(max_examples=200, deadline=None)
@given(
    sizes=grade_sizes,
    weights=weight_maps,
    count=st.integers(0, 150),
    seed=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
    shuffle=st.randoms(use_true_random=False),
)
def test_a_draw_is_a_pure_function_of_grades_weights_count_and_seed(
    sizes: dict[str, int], weights: dict[str, Any], count: int, seed: str, shuffle: Any
) -> None:
    people = population(sizes)
    result = draw(people, weights=weights, count=count, seed=seed)
    shuffled = list(people)
    shuffle.shuffle(shuffled)
    assert draw(shuffled, weights=weights, count=count, seed=seed) == result
    record = {
        "procedure": "sha256-largest-remainder-v1",
        "seed": seed,
        "count": count,
        "population": people,
        "weights": {g: str(w) for g, w in weights.items()},
    }
    assert [(d.uscc, d.grade, d.key) for d in result.drawn] == [
        (d["uscc"], d["grade"], d["key"]) for d in rerun_by_hand(record)
    ]
    whole = sizes.get("E", 0)
    others = sum(n for g, n in sizes.items() if g != "E" and weights[g] > 0)
    assert len(result.drawn) == whole + min(max(0, count - whole), others)


# Stored and published, on both databases ----------------------------------------------------


def publish(engine: Engine, year: int, scale: str = "four") -> None:
    with writing(engine) as conn:
        publishing.compute_draft(conn, rules=RULES, year=year, scale=scale, by="tests")
    with writing(engine) as conn:
        publishing.publish(conn, year=year, revision=None, reason=None, by="tests")


def close(engine: Engine, uscc: str) -> None:
    with writing(engine) as conn:
        conn.execute(
            update(institutions).where(institutions.c.uscc == uscc).values(status="closed")
        )


@pytest.fixture
def client(database_url: str, loaded: Engine, api_keys: Keys) -> Iterator[TestClient]:
    publish(loaded, 2023)
    close(loaded, CLOSED)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def test_a_published_draw_reruns_from_its_json_alone(client: TestClient, api_keys: Keys) -> None:
    made = client.post(
        "/v1/draws", json={"year": 2023, "count": 6}, headers=api_keys.header("supervisor")
    )
    assert made.status_code == 201, made.text
    published = client.get(f"/v1/draws/{made.json()['id']}")  # anonymous
    assert published.status_code == 200, published.text
    record = json.loads(published.text)
    assert record["drawn"] == rerun_by_hand(record)
    assert len(record["drawn"]) == 6
    assert record["seed_source"] == "secrets" and len(record["seed"]) == 32
    # the population is the published grades of the revision named, without the closed one
    rating = client.get("/v1/ratings/2023").json()
    assert (record["year"], record["revision"], record["snapshot_hash"]) == (
        2023,
        rating["snapshot"]["revision"],
        rating["snapshot"]["content_hash"],
    )
    graded = sorted([r["uscc"], r["grade"]] for r in rating["institutions"])
    assert record["population"] == [p for p in graded if p[0] != CLOSED]
    assert record["excluded"] == [CLOSED]
    assert CLOSED not in {d["uscc"] for d in record["drawn"]}
    assert record["weights"] == {"A": "0.5", "B": "0.75", "C": "1", "D": "2", "E": "all"}
    listed = client.get("/v1/draws", params={"year": 2023}).json()
    assert [d["id"] for d in listed] == [record["id"]]
    assert "population" not in listed[0]
    assert client.get("/v1/draws", params={"year": 2024}).json() == []


def test_drawing_needs_a_supervisor_and_a_published_year(
    client: TestClient, api_keys: Keys
) -> None:
    body = {"year": 2023, "count": 3, "seed": "abc"}
    assert client.post("/v1/draws", json=body).status_code == 401
    assert (
        client.post("/v1/draws", json=body, headers=api_keys.header("analyst")).status_code == 403
    )
    none = client.post(
        "/v1/draws", json={**body, "year": 2024}, headers=api_keys.header("supervisor")
    )
    assert none.status_code == 404, none.text
    spaced = client.post(
        "/v1/draws", json={**body, "seed": "a b"}, headers=api_keys.header("supervisor")
    )
    assert spaced.status_code == 422
    assert client.get("/v1/draws/999").status_code == 404


def test_closed_when_rated_or_since_never_drawn_and_both_listed(loaded: Engine) -> None:
    close(loaded, CLOSED)  # before the rating: listed as not rated
    publish(loaded, 2023)
    later = "52120111MJ06185738"  # 博文, the only D: closed after the rating
    close(loaded, later)
    with writing(loaded) as conn:
        record = draws.make_draw(
            conn, year=2023, count=15, weights=WEIGHTS, seed="s", by="tests", at=NOW
        )
    assert record["excluded"] == sorted([CLOSED, later])
    assert not {CLOSED, later} & {u for u, _ in record["population"]}
    assert not {CLOSED, later} & {d["uscc"] for d in record["drawn"]}
    assert "D" not in record["quotas"] and len(record["drawn"]) == 14


def test_a_draw_is_write_once(loaded: Engine) -> None:
    publish(loaded, 2023)
    with writing(loaded) as conn:
        record = draws.make_draw(
            conn, year=2023, count=3, weights=WEIGHTS, seed="s", by="tests", at=NOW
        )
    for statement in (
        f"UPDATE draws SET seed = 'other' WHERE id = {record['id']}",
        f"DELETE FROM draws WHERE id = {record['id']}",
    ):
        with pytest.raises(DBAPIError, match="write-once"), writing(loaded) as conn:
            conn.execute(text(statement))
    with reading(loaded) as conn:
        assert draws.get(conn, record["id"]) == record


def test_same_seed_same_stored_list_and_the_five_grade_scale_draws_every_e(
    loaded: Engine,
) -> None:
    with writing(loaded) as conn:  # a veto: the lowest grade, E on the five-grade scale
        conn.execute(
            findings.insert().values(
                finding_id="T-VETO",
                uscc="52120111MJ0633917G",
                indicator="veto_major_accident",
                occurred_on=date(2023, 5, 1),
                count=1,
                source="inspection",
                recorded_at=NOW,
                recorded_by="tests",
            )
        )
    publish(loaded, 2023, scale="five")
    with writing(loaded) as conn:
        one = draws.make_draw(conn, year=2023, count=2, weights=WEIGHTS, seed="k", by="t", at=NOW)
        two = draws.make_draw(conn, year=2023, count=2, weights=WEIGHTS, seed="k", by="t", at=NOW)
    assert one["id"] != two["id"] and one["drawn"] == two["drawn"]
    grades = dict(one["population"])
    es = sorted(u for u, g in grades.items() if g == "E")
    assert es == ["52120111MJ0633917G"]
    assert set(es) <= {d["uscc"] for d in one["drawn"]}
    with writing(loaded) as conn, pytest.raises(InvalidInput, match="no draw weight for grade"):
        draws.make_draw(
            conn, year=2023, count=2, weights={"A": Fraction(1)}, seed="k", by="t", at=NOW
        )
    with writing(loaded) as conn, pytest.raises(NotFound):
        draws.make_draw(conn, year=2022, count=2, weights=WEIGHTS, seed="k", by="t", at=NOW)


def test_the_draw_command_prints_the_record_it_stored(database_url: str, loaded: Engine) -> None:
    publish(loaded, 2023)
    env = {"CREDIT_DATABASE_URL": database_url, "CREDIT_DRAW_WEIGHTS": "A=1,B=1,C=1,D=1"}
    runner = CliRunner()
    done = runner.invoke(
        cli, ["draw", "--year", "2023", "--count", "4", "--seed", "xq", "--format", "json"], env=env
    )
    assert done.exit_code == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["seed_source"] == "given" and record["drawn"] == rerun_by_hand(record)
    with reading(loaded) as conn:
        assert draws.get(conn, record["id"])["drawn"] == record["drawn"]
    table = runner.invoke(cli, ["draw", "--year", "2023", "--count", "4", "--seed", "xq"], env=env)
    assert table.exit_code == 0, table.stderr
    assert [line.split("\t")[1] for line in table.stdout.splitlines() if "\t" in line] == [
        d["uscc"] for d in record["drawn"]
    ]
    late = runner.invoke(cli, ["draw", "--year", "2024", "--count", "4"], env=env)
    assert late.exit_code == 1 and late.stderr.startswith("error: "), late.stderr


def test_migration_0005_goes_down_and_up_again_with_its_guards(loaded: Engine) -> None:
    from alembic import command

    from service.core.migrate import _config

    config = _config()
    with loaded.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    with reading(loaded) as conn:
        assert not {"draws", "objections"} & set(inspect(conn).get_table_names())
    upgrade(loaded)
    publish(loaded, 2023)
    with writing(loaded) as conn:
        record = draws.make_draw(
            conn, year=2023, count=2, weights=WEIGHTS, seed="s", by="t", at=NOW
        )
    with pytest.raises(DBAPIError, match="write-once"), writing(loaded) as conn:
        conn.execute(text(f"DELETE FROM draws WHERE id = {record['id']}"))
