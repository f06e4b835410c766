"""`soar report RUN --html DIR` on the tiny run: the page's tables hold what the store holds, a
real headless Chromium draws it with every plot, and it renders a run in progress, a run on
s3://, a run with a corrupt step record and a fresh-student run."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from soar import layout, records
from soar.store import FileStore, open_store, write_jsonl
from tests.support.manifests import soarrun, write_manifest
from tests.support.runs import soar

pytestmark = pytest.mark.slow

SOAR_PLOTS = {
    "teacher-reward.png",
    "promotions.png",
    "baseline-accuracy.png",
    "pass-at-k.png",
    "vendi.png",
    "stage-seconds.png",
}
# Written into PQ beside the run's own rows: the page must show it as text, not as markup.
MARKUP = "<b>{i}+1</b> & 'x' \"y\""


@dataclass
class Table:
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)  # indexes of rows with class "error"


class Page(HTMLParser):
    """A report page as a reader sees it: its tables by id (cell texts, unescaped) and the
    sources of its images."""

    def __init__(self, path: Path):
        super().__init__()
        self.tables: dict[str, Table] = {}
        self.images: list[str] = []
        self.text: list[str] = []
        self._table: Table | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(path.read_text())

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attributes["id"], Table())
        elif tag == "tr" and self._table is not None:
            self._row = []
            if attributes.get("class") == "error":
                self._table.errors.append(len(self._table.rows))
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attributes["src"])

    def handle_data(self, data: str) -> None:
        (self._cell if self._cell is not None else self.text).append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._table.headers:
                self._table.rows.append(self._row)
            else:
                self._table.headers = self._row
                self._table.errors.clear()
            self._row = None
        elif tag == "table":
            self._table = None


def render(uri: str, out: Path) -> Page:
    """`soar report URI --html OUT`, as a user runs it."""
    result = soar("report", uri, "--html", str(out), cwd=out.parent)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip() == f"report: {out / 'index.html'}"
    return Page(out / "index.html")


def copy_run(finished_run: Path, folder: Path) -> Path:
    return Path(shutil.copytree(finished_run, folder / "e2e"))


def stage_seconds(store: Path, step: int) -> float:
    """Seconds of every completed stage of a step, read from the completion manifests."""
    manifests = [json.loads(p.read_text()) for p in (store / layout.DONE).rglob("*.json")]
    return sum(m["seconds"] for m in manifests if m["step"] == step)


def step_row(store: Path, t: int) -> list[str]:
    """Step t's row as the page should show it, from the step record."""
    r = layout.load(FileStore(store), layout.step_record(t), records.StepRecord)
    return [
        str(t),
        f"{r.teacher_reward:+.3f}",
        f"{r.moving_average:+.3f}",
        "yes" if r.promoted else "no",
        str(r.promotions),
        f"{r.baseline_accuracy:.3f}",
        f"{r.generation['vendi']:.3f}",
        f"{stage_seconds(store, t):.1f}",
    ]


def evaluation_row(store: Path, t: int) -> list[str]:
    ev = layout.load(FileStore(store), layout.evaluation(t), records.Evaluation)
    pass_at_k = [f"{ev.pass_at_k[k]:.3f}" for k in sorted(ev.pass_at_k)]
    model = ev.baseline or "base model"
    return [str(t), f"{ev.hard_train_accuracy:.3f}", model, str(ev.problems), *pass_at_k]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def varied_run(finished_run: Path, tmp_path_factory) -> Path:
    """The tiny run with a different number in every field the page shows (its rewards and
    accuracies are all 0, so a number in the wrong row or column would go unseen), and PQ
    longer than the page shows, with markup in some questions."""
    store = copy_run(finished_run, tmp_path_factory.mktemp("varied"))
    files = FileStore(store)
    for t in (1, 2):
        record = layout.load(files, layout.step_record(t), records.StepRecord)
        record.teacher_reward = 0.1 * t + 0.0111
        record.moving_average = -0.1 * t - 0.0222
        record.baseline_accuracy = 0.3 * t + 0.0333
        record.generation = {**(record.generation or {}), "vendi": 2 + t / 8}
        layout.save(files, layout.step_record(t), record)
    extra = [{"step": 2, "dataset": 1, "question": MARKUP.format(i=i)} for i in range(6)]
    write_jsonl(files, layout.PQ, read_rows(store / layout.PQ) + extra)
    return store


@pytest.fixture(scope="module")
def varied_page(varied_run: Path, tmp_path_factory) -> tuple[Path, Page]:
    out = tmp_path_factory.mktemp("varied-html") / "report"
    return out, render(str(varied_run), out)


def test_tables_hold_the_step_records_evaluations_and_pq(varied_run, varied_page):
    out, page = varied_page
    steps = page.tables["steps"]
    assert steps.headers[:7] == [
        "step",
        "teacher reward",
        "moving average",
        "promoted",
        "promotions",
        "baseline accuracy",
        "Vendi",
    ]
    assert steps.rows == [step_row(varied_run, 1), step_row(varied_run, 2)]
    assert steps.rows[1][1:4] == ["+0.211", "-0.222", "yes"]  # the records as changed above
    assert page.tables["evaluations"].rows == [evaluation_row(varied_run, t) for t in (0, 1, 2)]
    pq = read_rows(varied_run / layout.PQ)
    assert len(pq) == 14
    questions = page.tables["questions"]
    assert questions.headers == ["step", "dataset", "question", "answer"]
    expected = [
        [str(r["step"]), str(r["dataset"]), r["question"], r.get("answer", "-")] for r in pq
    ]
    assert questions.rows == expected[:10]
    assert questions.rows[9][2] == MARKUP.format(i=1)  # shown as text: escaped in the HTML
    assert "<b>" not in (out / "index.html").read_text()
    assert set(page.images) == SOAR_PLOTS
    assert "mode soar: 2 of 2 steps committed (complete)" in page.text


def chromium() -> str:
    """The browser, which CI must have (`make browser` installs it)."""
    found = shutil.which("chromium")
    if found is None and os.environ.get("CI"):
        pytest.fail("chromium is missing: `make browser` installs it", pytrace=False)
    if found is None:
        pytest.skip("chromium is not installed (`make browser`); CI fails here instead")
    return found


def headless(*args: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def drawn(image: Image.Image) -> tuple[int, float]:
    """Distinct colours, and the share of pixels that are not white."""
    rgb = image.convert("RGB")
    pixels = rgb.width * rgb.height
    counts = {colour: count for count, colour in rgb.getcolors(maxcolors=pixels)}
    return len(counts), 1 - counts.get((255, 255, 255), 0) / pixels


# Run in the page after load: each image's source and whether the browser decoded it.
IMAGE_PROBE = """<script>
window.addEventListener("load", () => {
  const state = [...document.images].map(i => i.getAttribute("src") + "=" + (i.naturalWidth > 0));
  document.body.setAttribute("data-images", state.join(" "));
});
</script></body>"""


def test_chromium_draws_the_page_with_every_plot(varied_page):
    out, page = varied_page
    screenshot = out.parent / "screenshot.png"
    headless(f"--screenshot={screenshot}", "--window-size=1200,2000", (out / "index.html").as_uri())
    with Image.open(screenshot) as shot:
        assert shot.size == (1200, 2000)
        colours, ink = drawn(shot)
    assert colours > 200 and ink > 0.02, (colours, ink)
    # The same page with a probe that records which images the browser loaded.
    probe = out / "probe.html"
    probe.write_text((out / "index.html").read_text().replace("</body>", IMAGE_PROBE))
    dom = headless("--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    state = dom.split('data-images="', 1)[1].split('"', 1)[0].split()
    assert sorted(state) == sorted(f"{name}=true" for name in SOAR_PLOTS)
    for name in SOAR_PLOTS:
        with Image.open(out / name) as plot:
            assert plot.format == "PNG" and plot.width > 300 and plot.height > 200
            colours, ink = drawn(plot)
        assert colours > 20 and ink > 0.02, (name, colours, ink)


def test_a_run_in_progress_shows_its_committed_steps_only(finished_run, tmp_path):
    store = copy_run(finished_run, tmp_path)
    # Killed in step 2's teacher-update after it wrote the step record, before its manifest;
    # step 2's evaluation has not run.
    for key in (layout.done("2/teacher-update"), layout.done("2/evaluate"), layout.evaluation(2)):
        (store / key).unlink()
    assert (store / layout.step_record(2)).exists()
    page = render(str(store), tmp_path / "html")
    assert page.tables["steps"].rows == [step_row(store, 1)]
    assert [row[0] for row in page.tables["evaluations"].rows] == ["0", "1"]
    assert "mode soar: 1 of 2 steps committed (in progress)" in page.text
    assert set(page.images) == SOAR_PLOTS


def test_a_run_on_s3_renders_as_on_file(finished_run, varied_page, s3_server, tmp_path):
    bucket = f"report-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/team/e2e"
    store = open_store(uri)
    for path in sorted(p for p in finished_run.rglob("*") if p.is_file()):
        store.write_bytes(path.relative_to(finished_run).as_posix(), path.read_bytes())
    page = render(uri, tmp_path / "html")  # the subprocess inherits moto's AWS_* variables
    assert f"SOAR run {uri}" in page.text
    assert page.tables["steps"].rows == [step_row(finished_run, t) for t in (1, 2)]
    assert page.tables["evaluations"].rows == [evaluation_row(finished_run, t) for t in (0, 1, 2)]
    pq = read_rows(finished_run / layout.PQ)
    assert [row[2:] for row in page.tables["questions"].rows] == [
        [r["question"], r["answer"]] for r in pq[:10]
    ]
    assert set(page.images) == SOAR_PLOTS


def test_a_corrupt_step_record_is_an_error_row_and_the_rest_still_shows(finished_run, tmp_path):
    store = copy_run(finished_run, tmp_path)
    (store / layout.step_record(1)).write_text('{"step": 1, "promo')
    page = render(str(store), tmp_path / "html")
    steps = page.tables["steps"]
    assert steps.errors == [0]
    number, message = steps.rows[0]
    assert number == "1" and message.startswith("unreadable: ")
    assert layout.step_record(1) in message and layout.done("1/teacher-update") in message
    assert steps.rows[1] == step_row(store, 2)
    assert set(page.images) == SOAR_PLOTS


def test_a_fresh_student_run_shows_its_train_stages(finished_run, tmp_path):
    """evaluate-questions on the tiny run's PQ: 4 RLOO steps in 2 train stages."""
    spec = {
        "mode": "evaluate-questions",
        "seed": 3,
        "data": {"domain": "arith", "builtin": "arith", "poolSize": 60, "failK": 8},
        "student": {"batchQuestions": 2, "groupSize": 4, "maxNewTokens": 48},
        "freshStudent": {
            "questions": str(finished_run / layout.PQ),
            "strategy": "mixed",
            "maxSteps": 4,
            "segmentSteps": 2,
            "smoothing": 3,
        },
        "evaluation": {"samples": 4, "ks": [1, 4], "maxProblems": 4},
        "execution": {"parallelism": 2},
    }
    manifest = write_manifest(tmp_path, soarrun("fresh", spec))
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    store = tmp_path / "fresh"
    page = render(str(store), tmp_path / "html")
    expected = []
    for t in (1, 2):
        segment = layout.load(FileStore(store), layout.fresh_segment(t), records.TrainSegment)
        mean = sum(s["reward"] for s in segment.steps) / len(segment.steps)
        expected.append([str(t), f"{segment.first}-{segment.last}", f"{mean:.3f}"])
    steps = page.tables["steps"]
    assert steps.headers[:3] == ["train stage", "RLOO steps", "mean reward"]
    assert [row[:3] for row in steps.rows] == expected
    assert [row[1] for row in expected] == ["0-2", "2-4"]
    evals = page.tables["evaluations"]
    assert [row[:2] for row in evals.rows] == [["0", "0"], ["1", "2"], ["2", "4"]]
    questions = read_rows(store / layout.QUESTIONS)
    assert page.tables["questions"].rows == [[q["question"], q["answer"]] for q in questions[:10]]
    assert set(page.images) == {"training-reward.png", "pass-at-k.png", "stage-seconds.png"}
    assert "mode evaluate-questions: 2 of 2 train stages committed (complete)" in page.text


def test_without_matplotlib_html_is_one_line_naming_the_extra_and_text_still_works(
    finished_run, tmp_path
):
    """matplotlib made unimportable in the `soar` process (a None entry in sys.modules is how
    Python marks a module absent): --html fails in one line, the text report needs none."""
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from soar.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    html = [sys.executable, "-c", code, "report", str(finished_run), "--html", str(tmp_path)]
    result = subprocess.run(html, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: soar report --html needs matplotlib, from the experiment extra: "
        "pip install 'soar[experiment]'"
    ]
    assert not (tmp_path / "index.html").exists()
    text = subprocess.run([*html[:5]], capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    assert "promotions: 2" in text.stdout


def test_the_report_modules_import_neither_torch_nor_matplotlib():
    """The text report runs where only the bottom layer is installed; matplotlib is imported
    only when a page is written."""
    code = (
        "import json, sys\n"
        "import soar.report, soar.report_html\n"
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib')]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []
