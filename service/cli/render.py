"""How ratings and explanations look on a terminal, and as JSON or CSV for other programs.

Rendering is kept apart from the CLI's argument handling so the service can reuse the same
shapes (`rating_records`) and the terminal output stays one readable place to change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from scoring.explain import Explanation
from scoring.lift import Lift
from scoring.rules import RulesInForce, Unit
from service.ratings.dry_run import DryRun
from service.ratings.exports import csv_text

GRADE_STYLE = {"A": "bold green", "B": "green", "C": "yellow", "D": "red", "E": "bold red"}


def ranked(rating: pd.DataFrame) -> pd.DataFrame:
    """Best score first; equal scores by credit code, so the order never depends on input order.
    Institutions not rated (closed: no score) come last."""
    return rating.sort_values(
        ["score", "uscc"], ascending=[False, True], kind="stable", na_position="last"
    )


def _rated(row: Mapping[Any, Any]) -> bool:
    return row.get("status") != "closed"


def rating_records(rating: pd.DataFrame, force: RulesInForce) -> list[dict[str, Any]]:
    """One plain dict per institution: the JSON shape of a rating."""
    codes = [i.code for i in force.indicators]
    labels = {b.grade: b.label for b in force.bands}
    return [
        {
            "uscc": row["uscc"],
            "name": row["name"],
            "year": force.year,
            "scale": force.scale.code,
            "status": row.get("status", "operating"),
            "score": int(row["score"]),
            "grade": row["grade"],
            "grade_label": labels[row["grade"]],
            "vetoed": bool(row["vetoed"]),
            "vetoes": list(row["vetoes"]),
            "points": {code: int(row[code]) for code in codes},
        }
        if _rated(row)
        else {
            "uscc": row["uscc"],
            "name": row["name"],
            "year": force.year,
            "scale": force.scale.code,
            "status": row["status"],
            "score": None,
            "grade": None,
            "reason": row["reason"],
        }
        for row in ranked(rating).to_dict("records")
    ]


def as_json(rating: pd.DataFrame, force: RulesInForce) -> str:
    return json.dumps(rating_records(rating, force), ensure_ascii=False, indent=2)


def as_csv(rating: pd.DataFrame) -> str:
    """CSV with one column per indicator; vetoes joined by ';'. Made safe for a spreadsheet
    (formulas neutralised) in `service.ratings.exports`, like every table the project writes."""
    out = ranked(rating).copy()
    # closed institutions have no vetoes list (nor score, nor grade)
    out["vetoes"] = out["vetoes"].map(lambda codes: "" if codes is None or codes is pd.NA
                                      or isinstance(codes, float) else ";".join(codes))  # fmt: skip
    return csv_text(out)


def rating_table(rating: pd.DataFrame, force: RulesInForce) -> Table:
    labels = {b.grade: b.label for b in force.bands}
    titles = {v.code: v.title for v in force.vetoes}
    table = Table(
        title=f"{force.year}年度 学科类校外培训机构信用评价结果 · {force.scale.title}",
        caption=f"规则版本 {force.version} · {force.content_hash[:19]}…" + period_note(force),
        box=box.SIMPLE_HEAD,
    )
    table.add_column("序号", justify="right")
    table.add_column("统一社会信用代码")
    table.add_column("机构名称")
    table.add_column("得分", justify="right")
    table.add_column("等级", justify="center")
    table.add_column("一票否决")
    for n, row in enumerate(ranked(rating).to_dict("records"), start=1):
        if not _rated(row):  # closed: listed, never graded
            table.add_row(str(n), row["uscc"], row["name"], "—", "不予评价", row["reason"])
            continue
        grade = Text(
            f"{row['grade']} {labels[row['grade']]}", style=GRADE_STYLE.get(row["grade"], "")
        )
        vetoes = "；".join(titles[c] for c in row["vetoes"])
        name = row["name"] + ("（暂停办学）" if row.get("status") == "suspended" else "")
        table.add_row(str(n), row["uscc"], name, str(row["score"]), grade, vetoes)
    return table


def period_note(force: RulesInForce) -> str:
    """When the measure came into force during the year rated: which findings counted."""
    start = force.counts_from
    if start == date(force.year, 1, 1):
        return ""
    return (
        f"\n本年度仅计入 {start.isoformat()} 至 {force.year}-12-31 的认定记录"
        f"（办法自 {force.info.issued_on.isoformat()} 起施行，不溯及既往）"
    )


def grade_summary(rating: pd.DataFrame, force: RulesInForce) -> str:
    counts = rating["grade"].value_counts()
    summary = "  ".join(
        f"{b.grade}（{b.label}）{int(counts.get(b.grade, 0))}家" for b in force.bands
    )
    not_rated = int(rating["grade"].isna().sum())
    return summary + (f"  不予评价 {not_rated}家" if not_rated else "")


def lift_view(lifted: Lift) -> Text:
    """The end of an explanation: what lifts the institution to the next grade up."""
    text = Text()
    text.append("升级所需：", style="bold")
    text.append(lifted.summary + "\n")
    for proposal in lifted.revocations:
        text.append(
            f"  撤销 {'、'.join(proposal.finding_ids)} → {proposal.score} 分，{proposal.grade} 级\n"
        )
    if lifted.revocations_total > len(lifted.revocations):
        text.append(f"  …… 另有 {lifted.revocations_total - len(lifted.revocations)} 种\n")
    if not lifted.exhaustive:
        text.append("  （组合过多，仅列出一种足够的撤销方案，未必最少）\n", style="dim")
    return text


def explanation_view(e: Explanation) -> RenderableType:
    """An explanation the way a supervisor reads it: the verdict, then every indicator."""
    head = Text()
    head.append(f"{e.name}\n", style="bold")
    head.append(f"统一社会信用代码 {e.uscc}    评价年度 {e.year}\n")
    head.append(f"得分 {e.score} / 1000    等级 ")
    head.append(f"{e.grade}（{e.grade_label}）", style=GRADE_STYLE.get(e.grade, ""))
    head.append(f"    等级划分 {e.scale}\n")
    for veto in e.vetoes:
        head.append(f"一票否决：{veto.title}（{veto.reference}）\n", style="bold red")
        for f in veto.findings:
            head.append(f"    {f.finding_id} {f.occurred_on} {f.reference} {f.note}\n")

    table = Table(box=box.SIMPLE_HEAD, show_lines=False)
    table.add_column("序号", justify="right")
    table.add_column("指标")
    table.add_column("得分", justify="right")
    table.add_column("扣分", justify="right")
    table.add_column("扣分依据")
    for i in e.indicators:
        title = i.title + (" [暂定]" if i.status == "provisional" else "")
        lost = Text(str(i.lost), style="red") if i.lost else Text("0", style="dim")
        table.add_row(
            str(i.number),
            title,
            f"{i.kept}/{i.points}",
            lost,
            _basis(i.findings, i.unit, i.deduction),
        )

    tail = Text()
    if e.not_counted:
        tail.append("未计入的记录：\n", style="bold")
        for nc in e.not_counted:
            f = nc.finding
            tail.append(f"  {f.finding_id} {f.occurred_on} {f.reference} {f.note}（{nc.reason}）\n")
    tail.append(
        f"规则版本 {e.ruleset_version}  规则哈希 {e.rules_hash}\n输入摘要 {e.input_digest}\n"
        "[暂定] = 该指标尚待官方附件原文确认（provisional）。",
        style="dim",
    )
    return Group(head, table, tail)


def _basis(findings: list[Any], unit: str | None, deduction: int | None) -> str:
    lines = []
    for f in findings:
        amount = f"{f.count}{Unit(unit).chinese}×{deduction}分" if unit and deduction else "全扣"
        ref = f" {f.reference}" if f.reference else ""
        lines.append(f"{f.finding_id} {f.occurred_on} {amount}{ref}")
    return "\n".join(lines)


def dry_run_table(run: DryRun) -> Table:
    """`credit-rating evaluate`: each institution's trial grade beside its published one."""
    force = run.force
    published = f"第{run.published_revision}版公示" if run.published_revision else "尚未公示"
    table = Table(
        title=f"{force.year}年度 信用评价试算（不保存）· {force.scale.title}",
        caption=f"规则版本 {force.version} · {force.content_hash[:19]}… · 对照{published} · "
        f"等级变化 {run.changes} 家",
        box=box.SIMPLE_HEAD,
    )
    for name, justify in (
        ("统一社会信用代码", "left"),
        ("机构名称", "left"),
        ("公示得分", "right"),
        ("公示等级", "center"),
        ("试算得分", "right"),
        ("试算等级", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in sorted(run.institutions, key=lambda c: (-c.score, c.uscc)):
        grade = Text(c.grade, style=("bold " if c.changed else "") + GRADE_STYLE.get(c.grade, ""))
        table.add_row(
            c.uscc,
            c.name,
            "" if c.published_score is None else str(c.published_score),
            c.published_grade or "",
            str(c.score),
            grade,
        )
    return table


def console(*, stderr: bool = False) -> Console:
    """The console every table and message is printed on: wide enough that Chinese names are
    not wrapped when output is piped, and plain. Everything printed here is data (names,
    references, notes, a platform's messages), so no string is read as markup (`[bold]`,
    `[/]`, `[link=…]` are printed as they are, never styled or refused with a MarkupError),
    emoji codes (`:thumbs_up:`) or highlighted; styles come only from `Text` objects made here.
    """
    probe = Console(stderr=stderr)
    width = probe.width if probe.is_terminal else 200
    return Console(stderr=stderr, width=width, markup=False, emoji=False, highlight=False)


def delivery_table(batches: list[dict[str, Any]]) -> Table:
    """`credit-rating share --status`: every batch, its state, attempts, last error, receipt."""
    table = Table(title="共享至“双随机、一公开”监管工作平台", box=box.SIMPLE_HEAD)
    for name in ("batch", "year", "rev", "records", "state", "attempts", "last error", "receipt"):
        table.add_column(name)
    style = {"delivered": "green", "pending": "yellow", "dead": "bold red"}
    for b in batches:
        table.add_row(
            b["batch_id"],
            str(b["year"]),
            str(b["revision"]),
            str(b["records"]),
            Text(b["state"], style=style.get(b["state"], "")),
            str(b["attempts"]),
            (b["last_error"] or "")[:80] if b["state"] != "delivered" else "",
            b["receipt_id"] or "",
        )
    return table


@contextmanager
def progress(total: int) -> Iterator[Callable[[str, Any], None]]:
    """A progress bar over batches on a terminal; silent when output is piped."""
    with Progress(
        *Progress.get_default_columns(), console=console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task("sharing", total=total)

        def advance(key: str, answer: Any) -> None:
            if answer.outcome != "retry":
                bar.advance(task)
            # The progress bar reads its description as markup whatever the console says.
            bar.update(task, description=escape(f"{key} {answer.outcome}"))

        yield advance
