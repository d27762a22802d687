"""Hashes stay byte for byte what earlier versions stored, so old snapshots still verify and
re-imported findings keep their ids. The values below were computed before the hashing code was
gathered into `scoring.hashing`; a change to any JSON form changes one of them."""

from __future__ import annotations

from datetime import UTC, datetime

from scoring.explain_parts import Explainer
from scoring.hashing import canonical_json
from scoring.input_files import read_inputs
from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS, load_rules
from service.ratings import integrity
from service.ratings.publishing import rate_rows
from service.records.storage import finding_id_for


def test_the_sample_year_hashes_as_before() -> None:
    rules = load_rules()
    institutions, findings = read_inputs(SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, rules=rules)
    header, rows = rate_rows(institutions, findings, rules, 2023, "four")
    assert header["rules_hash"] == (
        "sha256:c4ee3c59b0b5cf970f0ba1a568a2fb70f964f983cd7a40f6bbb41417df5f93f0"
    )
    assert rules.in_force(2023, "five").content_hash == (
        "sha256:8d36deac59dfe377f2300942e3b664ed8da21632d03ac0bf228b0fbef7989484"
    )
    assert header["input_digest"] == (
        "sha256:3742c0e10e5a3fdade89af62f11c5fe8f1b6ccd8c8ae0838d4381be831af709c"
    )
    # Stored before migration 0007: each explanation whole, no shared parts.
    explainer = Explainer(header["explanation_parts"])
    whole = [{**r, "explanation": explainer.explanation(r, r["explanation"])} for r in rows]
    stored_before = {**header, "explanation_parts": None}
    content = integrity.content_hash(
        stored_before, [{**r, "explanation": r["explanation"].model_dump_json()} for r in whole]
    )
    assert content == "sha256:09d0d25ba18dad69aaa1d45eed41af43528d505784e4529cb03d155ba8f863f0"
    # Stored since: the shared parts once, each row's own parts.
    assert integrity.content_hash(header, rows) == (
        "sha256:522995817439bc147dcb4bfc371e4ce2f705152fc13556bb16593d55baa19c3d"
    )
    correction = {
        "content_hash": content,
        "year": 2023,
        "revision": 2,
        "supersedes": 1,
        "reason": "复核更正",
        "published_at": datetime(2024, 1, 15, 2, 30, tzinfo=UTC),
        "published_by": "科长",
    }
    assert integrity.chain_hash(correction, integrity.GENESIS) == (
        "sha256:a4be922465f692e299a71058aba021675dc846b3510eabfc39a0edf4bcdb37ef"
    )


def test_a_finding_without_an_id_gets_the_id_it_always_got() -> None:
    finding = {
        "uscc": "52120111MJ0627485A",
        "indicator": "refunds_per_contract",
        "occurred_on": "2023-05-06",
        "count": 2,
        "source": "complaint",
        "reference": "西青教罚〔2023〕1号",
        "note": "家长投诉",
    }
    assert finding_id_for(finding) == "F-673cbf04ed20241f"


def test_each_json_form_is_spelled_out() -> None:
    data = {"b": "西青", "a": [1, 2]}
    assert canonical_json(data) == '{"a":[1,2],"b":"西青"}'
    assert canonical_json(data, "sorted") == '{"a": [1, 2], "b": "西青"}'
    assert canonical_json(data, "ordered") == '{"b": "西青", "a": [1, 2]}'
