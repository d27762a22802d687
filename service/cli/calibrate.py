"""`credit-rating calibrate`: its I/O. Reads the files, the records in the database
(`--stored`) or makes a synthetic district (`--demo`), calls `scoring.calibration_report`,
prints the report and, with `--out DIR`, writes the fitted estimators (joblib), their metadata
(JSON) and a candidate rules directory.

Registered in `service.cli.commands`, whose wrapper reports every ScoringError (the
calibration's CalibrationError included) as `error: …` and exit status 1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from enum import StrEnum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import joblib
import typer
import yaml
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from scoring.calibration import CalibrationError
from scoring.calibration_report import Calibration, candidate_documents, parse_years
from scoring.calibration_report import calibrate as run_calibration
from scoring.history import SYNTHETIC_NOTICE, synthetic_history
from scoring.i18n import _
from scoring.input_files import read_inputs
from scoring.rules import RULE_FILES
from scoring.shipped import RULES_DIR, load_rules
from service.cli import context, render
from service.core.database import reading
from service.records import storage

ARTIFACT = "calibration.joblib"
METADATA = "calibration.json"
LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas", "joblib")


class _PlainDumper(yaml.SafeDumper):
    """YAML as a person writes it: a date used twice is written twice, never as an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class ReportFormat(StrEnum):
    table = "table"
    json = "json"


def calibrate(
    years: Annotated[
        str, typer.Option(help=_("Consecutive years, e.g. 2023-2026 (the last pair is held out)."))
    ],
    institutions: Annotated[
        Path | None,
        typer.Option(
            help=_("Institutions file (.csv, .json, .xlsx, .parquet)."), show_default=False
        ),
    ] = None,
    findings: Annotated[
        Path | None,
        typer.Option(help=_("Findings over the years (same formats)."), show_default=False),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            help=_(
                "Rules directory (default: the shipped rules; with --stored, the configured ones)."
            ),
            show_default=False,
        ),
    ] = None,
    stored: Annotated[
        bool,
        typer.Option(
            "--stored", help=_("Use the institutions and findings in the database (CREDIT_*).")
        ),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help=_("Calibrate a synthetic district (合成数据) instead of reading files.")
        ),
    ] = False,
    demo_institutions: Annotated[
        int, typer.Option(min=1, help=_("Institutions of the --demo district."))
    ] = 2000,
    seed: Annotated[int, typer.Option(min=0, help=_("Seed of --demo and of the fits."))] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            help=_("Write the artifact, its metadata and a candidate rules directory here."),
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        ReportFormat, typer.Option("--format", help=_("table (text) or json."))
    ] = ReportFormat.table,
) -> None:
    """Calibrate the score against serious outcomes the next year: metrics on the held-out
    year, proposed points and grade cut-offs; with --out, a candidate rule set."""
    chosen = parse_years(years)
    rules = rules or (context.settings().rules_dir if stored else RULES_DIR)
    ruleset = load_rules(rules)
    files = institutions is not None or findings is not None
    if demo + stored + files > 1:
        raise CalibrationError(_("choose one of --institutions/--findings, --stored and --demo"))
    if demo:
        if not chosen:
            raise CalibrationError(_("no years given"))
        today = min(dt.date.today(), dt.date(chosen[-1], 12, 31))
        try:
            history = synthetic_history(
                demo_institutions, chosen, seed=seed, rules=ruleset, today=today
            )
        except ValueError as exc:
            raise CalibrationError(
                _("cannot make the demo district: {reason}").format(reason=exc)
            ) from None
        inst, found = history.institutions, history.findings
    elif stored:
        with reading(context.engine(context.settings())) as conn:
            inst, found = storage.frames(conn)
    else:
        if institutions is None or findings is None:
            raise CalibrationError(_("give --institutions and --findings, --stored, or --demo"))
        inst, found = read_inputs(institutions, findings, rules=ruleset)
    result = run_calibration(inst, found, ruleset, chosen, seed=seed, synthetic=demo)
    if out is not None:
        write_outputs(out, result, rules)
    if format is ReportFormat.json:
        print(json.dumps(result.report, ensure_ascii=False, indent=2))
    else:
        console = render.console()
        if demo:
            console.print(SYNTHETIC_NOTICE)
        console.print(report_view(result.report))
        if out is not None:
            console.print(
                _("written: {artifact}, {metadata}, {rules}/").format(
                    artifact=out / ARTIFACT, metadata=out / METADATA, rules=out / "rules"
                )
            )


# ---------------------------------------------------------------------------- files


def write_outputs(out: Path, result: Calibration, rules_dir: Path) -> None:
    """The joblib artifact, its metadata JSON and the candidate rules directory under `out`."""
    try:
        (out / "rules").mkdir(parents=True, exist_ok=True)
        documents = {
            name: yaml.safe_load((rules_dir / name).read_text(encoding="utf-8"))
            for name in RULE_FILES
        }
        candidate = candidate_documents(documents, result.report)
        artifact = out / ARTIFACT
        joblib.dump(
            {
                "calibrator": result.calibrator,
                "logistic": result.logistic,
                "codes": list(result.codes),
            },
            artifact,
        )
        digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
        metadata = {
            "artifact": ARTIFACT,
            "sha256": digest,
            "rules_hash": result.report["rules_hash"],
            "rules_version": result.report["rules_version"],
            "training_years": list(result.training_years),
            "held_out_year": result.held_out_year,
            "synthetic": result.report["synthetic"],
            **({"notice": SYNTHETIC_NOTICE} if result.report["synthetic"] else {}),
            "metrics": {
                key: result.report[key]
                for key in ("auc", "auc_score", "ks", "brier", "brier_baseline", "method")
            },
            "weights": result.report["weights"],
            "cutoffs": result.report["cutoffs"],
            "candidate_version": candidate["ruleset.yaml"]["version"],
            "versions": {
                **{name: package_version(name) for name in LIBRARIES},
                "python": platform.python_version(),
            },
        }
        (out / METADATA).write_text(
            json.dumps(metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        for name, document in candidate.items():
            (out / "rules" / name).write_text(
                yaml.dump(document, Dumper=_PlainDumper, allow_unicode=True, sort_keys=False),
                encoding="utf-8",
            )
    except OSError as exc:
        raise CalibrationError(
            _("cannot write to {path}: {reason}").format(path=out, reason=exc.strerror or exc)
        ) from None
    load_rules(out / "rules")  # what was written reads back as a valid rule set


# ---------------------------------------------------------------------------- table


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left", min_width=72)
    for header in headers:
        table.add_column(header, justify="right" if header != headers[0] else "left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def report_view(report: dict[str, Any]) -> Group:
    """The report as plain-text tables (Chinese and English headers)."""
    metrics = _table(
        f"留出年份 held-out {report['held_out_year']} → {report['outcome_year']}"
        f"（训练 training {', '.join(map(str, report['training_years']))}）",
        ["指标 metric", "值 value"],
        [
            ["机构 institutions", f"{report['institutions']:,}"],
            ["训练行 training rows", f"{report['training_rows']:,}"],
            ["严重后果率 outcome rate (held out)", _pct(report["held_out_rate"])],
            ["校准方法 method", str(report["method"])],
            ["AUC", f"{report['auc']:.3f}"],
            ["AUC（原始分 raw score）", f"{report['auc_score']:.3f}"],
            ["KS", f"{report['ks']:.3f}"],
            ["Brier", f"{report['brier']:.4f}"],
            ["Brier 基准 base rate", f"{report['brier_baseline']:.4f}"],
        ],
    )
    reliability = _table(
        "可靠性 reliability (held out)",
        ["区间 bin", "预测 predicted", "实际 observed", "数量 count"],
        [
            [
                f"{r['lower']:.1f}–{r['upper']:.1f}",
                _pct(r["mean_predicted"]),
                _pct(r["observed_rate"]),
                f"{r['count']:,}",
            ]
            for r in report["reliability"]
        ],
    )
    grades = _table(
        "各等级严重后果率 outcome rate by grade (held out, Wilson 95%)",
        ["等级 grade", "数量 count", "后果 events", "比率 rate", "区间 interval"],
        [
            [
                g["grade"],
                f"{g['count']:,}",
                f"{g['events']:,}",
                _pct(g["rate"]),
                f"{_pct(g['lower'])}–{_pct(g['upper'])}",
            ]
            for g in report["grade_rates"]
        ],
    )
    stability = _table(
        "稳定性 PSI of the score (<0.1 stable, <0.25 shifting)",
        ["年份 years", "PSI", "判断 band"],
        [[f"{p['from']}→{p['to']}", f"{p['value']:.4f}", p["band"]] for p in report["psi"]],
    )
    weights = _table(
        "建议分值 proposed points (non-negative, total 1000)",
        ["指标 indicator", "现行 current", "建议 proposed"],
        [
            [code, str(report["current_points"][code]), str(points)]
            for code, points in report["weights"].items()
        ],
    )
    cutoffs = _table(
        "建议等级分界 proposed cut-offs (training years)",
        ["等级 grade", "分数 scores", "数量 count", "比率 rate", "区间 interval"],
        [
            [
                c["grade"],
                f"{c['min']}–{c['max']}",
                f"{c['count']:,}",
                _pct(c["rate"]),
                f"{_pct(c['lower'])}–{_pct(c['upper'])}",
            ]
            for c in report["cutoffs"]
        ],
    )
    return Group(metrics, reliability, grades, stability, weights, cutoffs)
