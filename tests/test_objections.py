"""The publicity period (公示期) and objections, on SQLite and on PostgreSQL, with the service's
clock set inside and after the period.

The sample district's 2023: 博文 (52120111MJ06185738) is a D at 890, 30 points of which went on
the penalty of XQ-2023-0029 (no_penalties); that finding revoked, it is a C at 920.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from typer.testing import CliRunner

from scoring.shipped import load_rules
from service.api.app import create_app
from service.cli import app as cli
from service.core import clock
from service.core.database import make_engine, reading, writing
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.migrate import upgrade
from service.core.settings import Settings
from service.ratings import draws, objections, publishing, snapshots
from service.ratings.publicity import BEIJING, publicity
from service.records import storage
from service.records.importing import import_files
from tests.conftest import SAMPLE_FILES, Keys, drop_guards, new_postgres_database
from tests.servers import with_database

RULES = load_rules()
BOWEN = "52120111MJ06185738"
PENALTY = "XQ-2023-0029"  # 博文's 2023 penalty: no_penalties, 30 points
MATERIALS = "XQ-2023-0021"  # 博文's unregistered materials: 10 points
OTHER = "52120111MJ0627485A"  # 启航, an A


def publish(engine: Engine, year: int = 2023, reason: str | None = None) -> snapshots.Snapshot:
    with writing(engine) as conn:
        publishing.compute_draft(conn, rules=RULES, year=year, scale="four", by="tests")
    return publish_draft(engine, year, reason)


def publish_draft(engine: Engine, year: int = 2023, reason: str | None = None) -> Any:
    with writing(engine) as conn:
        return publishing.publish(conn, year=year, revision=None, reason=reason, by="tests")


def file(engine: Engine, at: datetime, finding: str | None = PENALTY, uscc: str = BOWEN) -> Any:
    with writing(engine) as conn:
        return objections.file(
            conn,
            settings=Settings(),
            year=2023,
            uscc=uscc,
            finding_id=finding,
            filed_by="博文 法定代表人",
            text="处罚决定已被复议撤销",
            by="tests",
            at=at,
        )


def resolve(engine: Engine, objection_id: int, upheld: bool, at: datetime) -> Any:
    with writing(engine) as conn:
        return objections.resolve(
            conn,
            objection_id=objection_id,
            upheld=upheld,
            reason="复议决定书：撤销原处罚决定" if upheld else "无新证据",
            rules=RULES,
            by="supervisor",
            at=at,
        )


# The period ---------------------------------------------------------------------------------


def test_the_period_counts_calendar_days_after_publication_on_the_beijing_calendar() -> None:
    snap = snapshots.Snapshot(
        **{f: None for f in snapshots.Snapshot.__dataclass_fields__}
        | {"year": 2023, "revision": 1, "published_at": datetime(2024, 3, 1, 16, 30, tzinfo=UTC)}
    )
    found = publicity(snap, Settings(publicity_days=7, objection_contact="022-1234 西青区教育局"))
    assert found is not None
    # 16:30 UTC is 00:30 on 2 March in Beijing: the period runs 3–9 March, to 24:00 Beijing
    assert (found.starts_on, found.ends_on) == (date(2024, 3, 3), date(2024, 3, 9))
    assert found.closes_at == datetime(2024, 3, 10, tzinfo=BEIJING)
    assert found.is_open(datetime(2024, 3, 9, 15, 59, 59, tzinfo=UTC))
    assert not found.is_open(datetime(2024, 3, 9, 16, 0, tzinfo=UTC))
    assert found.contact == "022-1234 西青区教育局"
    default = publicity(snap, Settings())
    assert default is not None and default.contact == Settings().bureau_name
    assert publicity(replace(snap, published_at=None), Settings()) is None


# Filing -------------------------------------------------------------------------------------


def test_an_objection_is_heard_in_the_period_and_refused_after_it_with_the_deadline(
    loaded: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    month_ago = clock.now() - timedelta(days=30)
    monkeypatch.setattr(publishing, "now", lambda: month_ago)
    snap = publish(loaded)
    monkeypatch.undo()
    period = publicity(snap, Settings())
    assert period is not None
    last = period.closes_at - timedelta(microseconds=1)
    filed = file(loaded, at=last)
    assert (filed["status"], filed["revision"], filed["finding_id"]) == ("filed", 1, PENALTY)
    with pytest.raises(Conflict, match=f"期限.*{period.ends_on.isoformat()} 24:00"):
        file(loaded, at=period.closes_at)
    # a correction, published today, opens a new period
    publish(loaded, reason="复核更正")
    assert file(loaded, at=clock.now())["revision"] == 2


def test_an_objection_must_name_a_rated_institution_and_a_finding_of_its_own_year(
    loaded: Engine,
) -> None:
    now = clock.now()
    with pytest.raises(NotFound):
        file(loaded, at=now)  # 2023 not published yet
    publish(loaded)
    with pytest.raises(InvalidInput, match="not against"):
        file(loaded, at=now, uscc=OTHER)
    with pytest.raises(InvalidInput, match="not of 2023"):
        file(loaded, at=now, finding="XQ-2024-0002")
    with pytest.raises(NotFound):
        file(loaded, at=now, finding="XQ-NOPE")
    assert file(loaded, at=now, finding=None, uscc=OTHER)["finding_id"] is None


# Resolving ----------------------------------------------------------------------------------


def test_upheld_revokes_the_finding_and_computes_a_correction_that_names_the_objection(
    loaded: Engine,
) -> None:
    publish(loaded)
    now = clock.now()
    objection = file(loaded, at=now)
    done = resolve(loaded, objection["id"], upheld=True, at=now)
    assert done.objection["status"] == "upheld"
    assert done.objection["correction_revision"] == 2
    assert done.correction is not None and done.correction.status == "draft"
    assert done.correction.reason == f"异议 #{objection['id']} 成立，撤销认定 {PENALTY}"
    with reading(loaded) as conn:
        finding = storage.get_finding(conn, PENALTY)
        row = snapshots.row_of(conn, done.correction, BOWEN)
    assert finding["status"] == "revoked"
    assert finding["revoke_reason"] == f"异议 #{objection['id']} 成立：复议决定书：撤销原处罚决定"
    assert (row["score"], row["grade"]) == (920, "C")
    # published without a reason of its own, the correction's reason is the objection's
    corrected = publish_draft(loaded)
    assert (corrected.revision, corrected.supersedes) == (2, 1)
    assert corrected.reason == done.correction.reason
    with pytest.raises(Conflict, match="already upheld"):
        resolve(loaded, objection["id"], upheld=False, at=now)


def test_a_supervisors_reason_keeps_the_objection_and_a_later_draft_names_every_pending_one(
    loaded: Engine,
) -> None:
    publish(loaded)
    now = clock.now()
    first, second = file(loaded, at=now), file(loaded, at=now, finding=MATERIALS)
    resolve(loaded, first["id"], upheld=True, at=now)
    done = resolve(loaded, second["id"], upheld=True, at=now)
    assert done.correction is not None
    assert done.correction.reason == (
        f"异议 #{first['id']}、#{second['id']} 成立，撤销认定 {PENALTY}、{MATERIALS}"
    )
    corrected = publish_draft(loaded, reason="异议复核")
    assert corrected.reason == f"异议复核（{done.correction.reason}）"


def test_rejected_keeps_its_reason_and_changes_nothing(loaded: Engine) -> None:
    publish(loaded)
    now = clock.now()
    objection = file(loaded, at=now)
    done = resolve(loaded, objection["id"], upheld=False, at=now)
    assert (done.objection["status"], done.objection["resolution"]) == ("rejected", "无新证据")
    assert done.correction is None and done.objection["correction_revision"] is None
    with reading(loaded) as conn:
        assert storage.get_finding(conn, PENALTY)["status"] == "active"
        assert [s.revision for s in snapshots.revisions(conn, year=2023)] == [1]


def test_objections_are_never_deleted_and_a_resolved_one_never_changes(loaded: Engine) -> None:
    publish(loaded)
    now = clock.now()
    objection = file(loaded, at=now)
    with pytest.raises(DBAPIError, match="never deleted"), writing(loaded) as conn:
        conn.execute(text(f"DELETE FROM objections WHERE id = {objection['id']}"))
    resolve(loaded, objection["id"], upheld=False, at=now)
    with pytest.raises(DBAPIError, match="final"), writing(loaded) as conn:
        conn.execute(text(f"UPDATE objections SET status = 'upheld' WHERE id = {objection['id']}"))
    with reading(loaded) as conn:
        assert objections.get(conn, objection["id"])["status"] == "rejected"


def test_concurrent_resolutions_never_leave_a_revoked_finding_without_its_correction(
    loaded: Engine,
) -> None:
    publish(loaded)
    now = clock.now()
    with reading(loaded) as conn:
        bowen = [
            f["finding_id"]
            for f in storage.list_findings(
                conn, uscc=BOWEN, year=2023, status=None, limit=100, offset=0
            )
        ]
    filed = [file(loaded, at=now, finding=f) for f in bowen]
    filed.append(file(loaded, at=now, finding=bowen[0]))  # two objections to one finding
    outcomes: list[str] = []

    def uphold(objection_id: int) -> None:
        try:
            resolve(loaded, objection_id, upheld=True, at=now)
            outcomes.append("upheld")
        except Conflict as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=uphold, args=(o["id"],)) for o in filed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("upheld") == len(bowen)
    assert [o for o in outcomes if o != "upheld"] == [f"finding {bowen[0]} is already revoked"]
    with reading(loaded) as conn:
        upheld = objections.listing(conn, year=2023, status=objections.ObjectionStatus.upheld)
        revoked = storage.list_findings(
            conn, uscc=BOWEN, year=2023, status="revoked", limit=100, offset=0
        )
        assert {o["finding_id"] for o in upheld} == {f["finding_id"] for f in revoked}
        for o in upheld:  # each correction draft was computed after its own revocation
            draft = snapshots.get(conn, 2023, o["correction_revision"])
            row = snapshots.row_of(conn, draft, BOWEN)
            explanation = snapshots.explained(draft, row).model_dump(mode="json")
            assert statuses_of(explanation, o["finding_id"]) == {"revoked"}
        latest = snapshots.get(conn, 2023, max(o["correction_revision"] for o in upheld))
        assert snapshots.row_of(conn, latest, BOWEN)["score"] == 1000
    assert len({o["correction_revision"] for o in upheld}) == len(bowen)


def statuses_of(data: Any, finding_id: str) -> set[str]:
    """The statuses an explanation gives the finding, wherever it lists it."""
    if isinstance(data, dict):
        found = {data["status"]} if data.get("finding_id") == finding_id else set()
        return found.union(*(statuses_of(v, finding_id) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(statuses_of(v, finding_id) for v in data))
    return set()


# Over HTTP, the clock set -------------------------------------------------------------------


@pytest.fixture
def client(database_url: str, loaded: Engine, api_keys: Keys) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, objection_contact="西青区教育局 022-0000")
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_api_files_lists_and_resolves_and_refuses_late_ones(
    client: TestClient, loaded: Engine, api_keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = publish(loaded)
    period = publicity(snap, Settings())
    assert period is not None
    rating = client.get("/v1/ratings/2023").json()["snapshot"]  # anonymous
    assert rating["publicity_ends_on"] == period.ends_on.isoformat()
    assert rating["objection_contact"] == "西青区教育局 022-0000"
    one = client.get(f"/v1/ratings/2023/{BOWEN}").json()["snapshot"]
    assert one["publicity_ends_on"] == rating["publicity_ends_on"]
    supervisor = api_keys.header("supervisor")
    body = {"year": 2023, "uscc": BOWEN, "finding_id": PENALTY, "filed_by": "张某", "text": "异议"}
    assert client.post("/v1/objections", json=body).status_code == 401
    assert (
        client.post("/v1/objections", json=body, headers=api_keys.header("analyst")).status_code
        == 403
    )

    monkeypatch.setattr(clock, "now", lambda: period.closes_at - timedelta(seconds=1))
    made = client.post("/v1/objections", json=body, headers=supervisor)
    assert made.status_code == 201, made.text
    objection = made.json()
    assert (objection["status"], objection["recorded_by"]) == ("filed", "test supervisor")

    monkeypatch.setattr(clock, "now", lambda: period.closes_at)
    late = client.post("/v1/objections", json=body, headers=supervisor)
    assert late.status_code == 409, late.text
    assert f"(期限) {period.ends_on.isoformat()} 24:00" in late.json()["detail"]

    listed = client.get("/v1/objections", params={"year": 2023}, headers=api_keys.header("analyst"))
    assert [o["id"] for o in listed.json()] == [objection["id"]]
    assert client.get("/v1/objections").status_code == 401

    # resolving is not bound to the period
    done = client.post(
        f"/v1/objections/{objection['id']}/resolve",
        json={"decision": "upheld", "reason": "复议撤销"},
        headers=supervisor,
    )
    assert done.status_code == 200, done.text
    correction = done.json()["correction"]
    assert (correction["revision"], correction["status"]) == (2, "draft")
    assert f"#{objection['id']}" in correction["reason"]
    again = client.post(
        f"/v1/objections/{objection['id']}/resolve",
        json={"decision": "rejected", "reason": "x"},
        headers=supervisor,
    )
    assert again.status_code == 409
    # A correction not yet published is the supervisors' and analysts' business only.
    assert client.get("/v1/objections/corrections", params={"year": 2023}).json() == []
    corrected = client.get("/v1/objections/corrections", params={"year": 2023}, headers=supervisor)
    assert [
        (c["objection_id"], c["before_grade"], c["after_grade"], c["published_revision"])
        for c in corrected.json()
    ] == [(objection["id"], "D", None, None)]
    published = client.post("/v1/ratings/2023/publish", json={}, headers=supervisor)
    assert published.status_code == 200, published.text
    assert published.json()["objection_contact"] == "西青区教育局 022-0000"
    [change] = client.get(
        "/v1/objections/corrections", params={"year": 2023}, headers=supervisor
    ).json()
    assert change == {
        "objection_id": objection["id"],
        "year": 2023,
        "uscc": BOWEN,
        "finding_id": PENALTY,
        "draft_revision": 2,
        "before_revision": 1,
        "before_grade": "D",
        "published_revision": 2,
        "after_grade": "C",
    }
    [public] = client.get("/v1/objections/corrections", params={"year": 2023}).json()
    assert public == {**change, "finding_id": None, "draft_revision": None}  # no finding
    revisions = client.get("/v1/ratings/2023/revisions", headers=supervisor).json()
    assert [(r["revision"], f"#{objection['id']}" in (r["reason"] or "")) for r in revisions] == [
        (1, False),
        (2, True),
    ]
    assert revisions[1]["publicity_ends_on"] is not None
    paths = client.get("/openapi.json").json()["paths"]
    methods = {m for path, ops in paths.items() if "/objections" in path for m in ops}
    assert methods == {"get", "post"}, "no route deletes or edits an objection"


def test_the_cli_files_lists_resolves_and_names_the_deadline_of_a_late_one(
    database_url: str, loaded: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = publish(loaded)
    period = publicity(snap, Settings())
    assert period is not None
    env = {"CREDIT_DATABASE_URL": database_url}
    runner = CliRunner()
    args = ["objection", "file", "--year", "2023", "--uscc", BOWEN, "--finding", PENALTY]
    args += ["--filed-by", "张某", "--text", "处罚已撤销"]
    filed = runner.invoke(cli, args, env=env)
    assert filed.exit_code == 0, filed.stderr
    assert filed.stdout.startswith("objection 1 filed against 2023 revision 1")
    monkeypatch.setattr(clock, "now", lambda: period.closes_at + timedelta(days=1))
    late = runner.invoke(cli, args, env=env)
    assert late.exit_code == 1
    assert late.stderr.startswith("error: ") and "期限" in late.stderr, late.stderr
    resolved = runner.invoke(
        cli,
        ["objection", "resolve", "1", "--decision", "upheld", "--reason", "复议撤销"],
        env=env,
    )
    assert resolved.exit_code == 0, resolved.stderr
    assert "correction draft: 2023 revision 2" in resolved.stdout
    listed = runner.invoke(cli, ["objection", "list", "--year", "2023"], env=env)
    assert listed.exit_code == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.split("\t")[:5] == ["1", "2023 r1", BOWEN, PENALTY, "upheld"]
    assert "correction r2" in line


# PostgreSQL: the service's role may draw, file and resolve, never delete ---------------------


@pytest.fixture
def postgres_loaded(postgres_admin: str, postgres_template: str) -> Iterator[Engine]:
    engine = make_engine(
        with_database(
            postgres_admin, new_postgres_database(postgres_admin, template=postgres_template)
        )
    )
    upgrade(engine)
    import_files(engine, SAMPLE_FILES, rules=RULES, by="tests")
    yield engine
    engine.dispose()


def test_a_member_of_credit_app_may_draw_file_and_resolve_but_never_delete(
    postgres_loaded: Engine,
) -> None:
    role = "app_" + uuid.uuid4().hex[:10]
    with postgres_loaded.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN IN ROLE credit_app')
    try:
        publish(postgres_loaded)
        now = clock.now()
        with writing(postgres_loaded) as conn:  # the service's own work needs no more rights
            conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
            draws.make_draw(
                conn,
                year=2023,
                count=3,
                weights=Settings().draw_weight_map,
                seed="s",
                by="app",
                at=now,
            )
            filed = objections.file(
                conn,
                settings=Settings(),
                year=2023,
                uscc=BOWEN,
                finding_id=PENALTY,
                filed_by="张某",
                text="异议",
                by="app",
                at=now,
            )
            objections.resolve(
                conn,
                objection_id=filed["id"],
                upheld=True,
                reason="成立",
                rules=RULES,
                by="app",
                at=now,
            )
        drop_guards(postgres_loaded)  # privileges hold even without the triggers
        for statement in (
            "DELETE FROM objections",
            "DELETE FROM draws",
            "UPDATE draws SET seed = 'x'",
            "TRUNCATE objections",
            "TRUNCATE draws",
        ):
            refused = pytest.raises(ProgrammingError, match="permission denied")
            with refused, postgres_loaded.begin() as conn:
                conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
                conn.exec_driver_sql(statement)
        with reading(postgres_loaded) as conn:
            assert objections.get(conn, filed["id"])["status"] == "upheld"
            assert len(draws.listing(conn, year=2023)) == 1
    finally:
        postgres_loaded.dispose()
        with postgres_loaded.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
