"""The manifest: defaults, one-line errors naming the field, and the CRD kept in sync."""

from pathlib import Path

import pytest
import yaml

from soar.crd import crd, crd_yaml
from soar.manifest import load_run, parse_run
from soar.spec import SoarRun, SpecError
from tests.support.manifests import soarrun

ROOT = Path(__file__).resolve().parents[2]


def manifest(**spec) -> dict:
    return soarrun("demo", **spec)


def errors(doc) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_run(doc)
    return str(info.value).splitlines()


def test_paper_defaults():
    spec = parse_run(manifest()).spec
    assert (spec.teacher.datasets, spec.teacher.questionsPerDataset) == (4, 64)
    assert (spec.student.repeats, spec.reward.questions, spec.steps) == (4, 64, 200)
    assert (spec.promotion.threshold, spec.promotion.window) == (0.01, 3)
    assert spec.teacher.learningRate == 1e-5 and spec.teacher.warmupSteps == 20
    assert spec.teacher.klCoef == spec.student.klCoef == 0.001
    assert (spec.student.batchQuestions, spec.student.groupSize) == (8, 32)
    assert (spec.student.innerSteps, spec.student.extraStepsAfterPromotion) == (10, 5)
    assert (spec.teacher.maxNewTokens, spec.student.maxNewTokens) == (512, 1024)
    assert spec.evaluation.ks == [1, 4, 8, 16, 32]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"teacher": {"datasets": 1}}, "manifest: spec.teacher.datasets: must be >= 2 for RLOO"),
        ({"student": {"groupSize": 1}}, "manifest: spec.student.groupSize: must be >= 2 for RLOO"),
        ({"teacher": {"dataset": 4}}, "manifest: spec.teacher.dataset: unknown field"),
        ({"steps": 0}, "manifest: spec.steps: must be >= 1"),
        ({"teacher": {"temperature": 0}}, "manifest: spec.teacher.temperature: must be > 0"),
        (
            {"mode": "fast"},
            "manifest: spec.mode: must be one of 'soar', 'hard-only' or 'evaluate-questions', "
            "got 'fast'",
        ),
        ({"data": {}}, "manifest: spec.data: set builtin, or both hardTrain and hardTest"),
        (
            {"evaluation": {"samples": 4}},
            "manifest: spec: evaluation.ks [8, 16, 32] exceed evaluation.samples",
        ),
        ({"storage": {"uri": "/tmp/x"}}, "manifest: spec.storage.uri: String should match"),
        (
            {"training": {"studentsPerStage": 2}},
            "manifest: spec: training.studentsPerStage > 1 needs student.lora",
        ),
        (
            {"training": {"sampler": "vllm", "vllmGpuMemory": 1}},
            "manifest: spec.training.vllmGpuMemory: must be < 1",
        ),
    ],
)
def test_errors_name_the_field(spec, expected):
    lines = errors(manifest(**spec))
    assert len(lines) == 1
    assert lines[0].startswith(expected)


def test_every_problem_is_reported_at_once():
    lines = errors(manifest(teacher={"datasets": 0}, student={"repeats": 0}))
    assert sorted(lines) == [
        "manifest: spec.student.repeats: must be >= 1",
        "manifest: spec.teacher.datasets: must be >= 2 for RLOO",
    ]


def test_wrong_kind_and_name():
    doc = manifest()
    doc["kind"] = "Job"
    doc["metadata"]["name"] = "Bad_Name"
    lines = errors(doc)
    assert any(line.startswith("manifest: kind: must be one of 'SoarRun'") for line in lines)


def test_bad_files(tmp_path):
    with pytest.raises(SpecError, match=r"missing.yaml: cannot read"):
        load_run(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("spec: [unclosed")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML"):
        load_run(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match=r"list.yaml: not a SoarRun manifest"):
        load_run(tmp_path / "list.yaml")


def test_examples_are_valid():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        assert isinstance(load_run(path), SoarRun)


def test_crd_file_is_generated_output():
    committed = (ROOT / "crds" / "soarrun.yaml").read_text()
    assert committed == crd_yaml(), "crds/soarrun.yaml is stale: run `make crd`"


def test_chart_ships_the_generated_crd() -> None:
    chart_crd = ROOT / "charts" / "soar-operator" / "crds" / "soarrun.yaml"
    assert chart_crd.read_text() == crd_yaml(), "run `make crd`"


def test_crd_schema_carries_defaults_bounds_and_rules():
    version = crd()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    datasets = spec["properties"]["teacher"]["properties"]["datasets"]
    assert datasets["minimum"] == 2 and datasets["default"] == 4
    lr = spec["properties"]["teacher"]["properties"]["learningRate"]
    assert lr["exclusiveMinimum"] is True and lr["minimum"] == 0
    assert spec["properties"]["mode"]["enum"] == ["soar", "hard-only", "evaluate-questions"]
    assert spec["properties"]["teacher"]["properties"]["lora"]["nullable"] is True
    assert any("evaluation.ks" in r["rule"] for r in spec["x-kubernetes-validations"])
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Step",
        "Stage",
        "Promotions",
        "Reward MA",
        "Age",
    ]
    assert "$ref" not in yaml.safe_dump(spec) and "anyOf" not in yaml.safe_dump(spec)
