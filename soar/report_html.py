"""`soar report RUN --html DIR`: a run's story as a web page with plots, for a browser.

DIR/index.html holds the per-step numbers as tables and the first questions of PQ; the plots are
PNG files beside it, referenced by relative path, so the folder can be copied or served as it
is. The run is read as soar/report.py reads it: committed steps only, and a record that cannot
be read is its error, shown in its row while the rest of the run still shows (docs/design.md,
"Reports"). This module writes the page: its tables and HTML; soar/report_plots.py builds and
draws the plots, and imports matplotlib (the `experiment` extra) only when a page is written.
"""

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from soar import layout, records, report_plots
from soar.planner import committed_step, fresh_student, is_complete, total_steps
from soar.report import evaluations, mean_reward, step_records, train_segments
from soar.report_plots import Evaluations, Plot, Timing
from soar.runstate import Run
from soar.store import RecordError, Store

PAGE = "index.html"
QUESTIONS_SHOWN = 10
STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }
th { background: #eee; }
td.text { text-align: left; }
tr.error td { background: #fdd; text-align: left; }
p.error { color: #a00; }
figure { display: inline-block; margin: 0.5em; }
"""


@dataclass
class Body:
    """What a page shows below its header: plots, then HTML sections."""

    plots: list[Plot]
    sections: list[str]


@dataclass(frozen=True)
class ErrorRow:
    """A table row whose record could not be read: its step, then the error."""

    step: int
    error: RecordError


Row = list[str] | ErrorRow


def write_html(store: Store, done: set[str], folder: Path) -> Path:
    """Write folder/index.html and its plots for the run in `store`; returns the page's path."""
    plt = report_plots.pyplot()
    run = Run.open(store)
    timings = report_plots.stage_timings(store, done)
    body = (
        fresh_body(run, done, timings) if fresh_student(run.spec) else soar_body(run, done, timings)
    )
    folder.mkdir(parents=True, exist_ok=True)
    figures = [report_plots.draw(plt, folder, plot) for plot in body.plots if plot.has_points()]
    page = folder / PAGE
    page.write_text(document(run, done, timings, figures, body.sections), encoding="utf-8")
    return page


# ----------------------------------------------------------------------------------- SOAR runs
def soar_body(run: Run, done: set[str], timings: list[Timing]) -> Body:
    """Teacher reward, promotions, baseline accuracy, Vendi and pass@k over the steps."""
    recorded = step_records(run, done)
    evals = evaluations(run)
    sections = [
        section("Steps", steps_table(recorded, timings)),
        section("Evaluations", evaluations_table(evals, fresh=False) + ps_paragraph(evals)),
        section("Promotion questions (PQ)", questions_table(run.store, layout.PQ)),
    ]
    return Body(report_plots.soar_plots(run, recorded, evals, timings), sections)


def steps_table(recorded: list[records.StepRecord | RecordError], timings: list[Timing]) -> str:
    headers = [
        "step",
        "teacher reward",
        "moving average",
        "promoted",
        "promotions",
        "baseline accuracy",
        "Vendi",
        "stage seconds",
    ]
    seconds = report_plots.seconds_per_step(timings)
    rows: list[Row] = []
    for t, r in enumerate(recorded, start=1):
        if isinstance(r, RecordError):
            rows.append(ErrorRow(t, r))
            continue
        rows.append(
            [
                str(r.step),
                number(r.teacher_reward, signed=True),
                number(r.moving_average, signed=True),
                {True: "yes", False: "no", None: "-"}[r.promoted],
                str(r.promotions),
                number(r.baseline_accuracy),
                number(report_plots.vendi(r)),
                f"{seconds.get(r.step, 0.0):.1f}",
            ]
        )
    return table("steps", headers, rows)


def ps_paragraph(evals: Evaluations) -> str:
    """PS, the promoted student the last evaluation chose, and its pass@k."""
    for ev in evals.values():
        if isinstance(ev, records.Evaluation) and ev.ps is not None:
            text = f"PS (best promoted student): {ev.ps['student'] or 'none (no promotion)'}"
            if ev.ps.get("pass_at_k"):
                text += f"; on the hard test split {pass_at_k_text(ev.ps['pass_at_k'])}"
            return paragraph(text)
    return ""


# ------------------------------------------------------------------------- fresh-student runs
def fresh_body(run: Run, done: set[str], timings: list[Timing]) -> Body:
    """A fresh student has no teacher: its training reward per RLOO step and pass@k."""
    segments = train_segments(run, done)
    evals = evaluations(run)
    sections = [
        section("Train stages", segments_table(segments, timings)),
        section("Evaluations", evaluations_table(evals, fresh=True) + protocol_paragraph(run)),
    ]
    if run.spec.mode == "evaluate-questions":
        sections.append(section("Training questions", questions_table(run.store, layout.QUESTIONS)))
    return Body(report_plots.fresh_plots(run, segments, evals, timings), sections)


def segments_table(
    segments: list[records.TrainSegment | RecordError], timings: list[Timing]
) -> str:
    seconds = report_plots.seconds_per_step(timings)
    rows: list[Row] = []
    for t, segment in enumerate(segments, start=1):
        if isinstance(segment, RecordError):
            rows.append(ErrorRow(t, segment))
            continue
        rows.append(
            [
                str(t),
                f"{segment.first}-{segment.last}",
                number(mean_reward(segment)),
                f"{seconds.get(t, 0.0):.1f}",
            ]
        )
    return table("steps", ["train stage", "RLOO steps", "mean reward", "stage seconds"], rows)


def protocol_paragraph(run: Run) -> str:
    """The paper's checkpoint choice, once the last evaluation has made it."""
    if not run.store.exists(layout.PROTOCOL_RESULT):
        return ""
    try:
        result = layout.load(run.store, layout.PROTOCOL_RESULT, records.ProtocolResult)
    except RecordError as err:
        return paragraph(f"protocol result unreadable: {err}", css="error")
    return paragraph(
        f"chosen step {result.chosen_step}; pass@k averaged over steps "
        f"{result.evaluated_steps}: {pass_at_k_text(result.pass_at_k)}"
    )


# --------------------------------------------------------------------------- both kinds of run
def evaluations_table(evals: Evaluations, fresh: bool) -> str:
    """pass@k after each evaluated step; a fresh student's by train stage and RLOO steps."""
    ks = sorted(
        {k for ev in evals.values() if not isinstance(ev, RecordError) for k in ev.pass_at_k}
    )
    first = ["after train stage", "RLOO steps"] if fresh else ["after step", "hard train accuracy"]
    headers = [*first, "model", "problems", *(f"pass@{k}" for k in ks)]
    rows: list[Row] = []
    for t, ev in evals.items():
        if isinstance(ev, RecordError):
            rows.append(ErrorRow(t, ev))
            continue
        second = str(ev.step) if fresh else number(ev.hard_train_accuracy)
        rows.append(
            [
                str(t),
                second,
                ev.baseline or "base model",
                str(ev.problems),
                *(number(ev.pass_at_k.get(k)) for k in ks),
            ]
        )
    return table("evaluations", headers, rows)


def questions_table(store: Store, key: str) -> str:
    """The first questions of a JSONL question set, with their answers where present."""
    if not store.exists(key):
        return paragraph(f"no {key} yet")
    try:
        rows = layout.load_rows(store, key)
    except RecordError as err:
        return paragraph(f"unreadable: {err}", css="error")
    shown = rows[:QUESTIONS_SHOWN]
    columns = [c for c in ("step", "dataset", "question", "answer") if any(c in r for r in shown)]
    cells = [[str(row.get(column, "-")) for column in columns] for row in shown]
    intro = paragraph(f"The first {len(shown)} of {len(rows)} questions in {key}.")
    return intro + table("questions", columns, cells)


# ---------------------------------------------------------------------------------------- HTML
def document(
    run: Run, done: set[str], timings: list[Timing], figures: list[str], sections: list[str]
) -> str:
    title = f"SOAR run {run.store.uri}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n{header(run, done, timings)}\n"
        f"<div>{''.join(figures)}</div>\n{''.join(sections)}\n</body></html>\n"
    )


def header(run: Run, done: set[str], timings: list[Timing]) -> str:
    """Mode, progress, when its stages ran, and manifests that could not be read."""
    unit = "train stages" if fresh_student(run.spec) else "steps"
    state = "complete" if is_complete(run.spec, done) else "in progress"
    lines = [
        f"mode {run.spec.mode}: {committed_step(run.spec, done)} of {total_steps(run.spec)} "
        f"{unit} committed ({state})"
    ]
    if timings:
        first = min(t.started for t in timings)
        last = max(t.started + t.seconds for t in timings)
        lines.append(
            f"stages ran from {utc(first)} to {utc(last)}; "
            f"{sum(t.seconds for t in timings):.1f} s of stage time"
        )
    if len(timings) < len(done):
        lines.append(f"{len(done) - len(timings)} completion manifests could not be read")
    return "".join(paragraph(line) for line in lines)


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def section(title: str, content: str) -> str:
    return f"<h2>{esc(title)}</h2>\n{content}\n"


def paragraph(text: str, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<p{attribute}>{esc(text)}</p>"


def table(name: str, headers: list[str], rows: list[Row]) -> str:
    """An HTML table with id `name`; an error row spans every column after its step."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(table_row(row, len(headers)) for row in rows)
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def table_row(row: Row, width: int) -> str:
    if isinstance(row, ErrorRow):
        return (
            f'<tr class="error"><td>{row.step}</td>'
            f'<td colspan="{width - 1}">unreadable: {esc(str(row.error))}</td></tr>'
        )
    return "<tr>" + "".join(cell(text) for text in row) + "</tr>"


def cell(text: str) -> str:
    """A number right-aligned, text left-aligned."""
    try:
        float(text)
    except ValueError:
        return f'<td class="text">{esc(text)}</td>'
    return f"<td>{esc(text)}</td>"


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def number(value: float | None, signed: bool = False) -> str:
    """Three decimals, as the text report shows them; "-" for no value."""
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def pass_at_k_text(values: dict) -> str:
    return "  ".join(f"pass@{k}={number(v)}" for k, v in values.items())
