"""The SoarRun CustomResourceDefinition, generated from the spec models so the two never drift."""

from typing import Any

import yaml

from soar.contract import GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION
from soar.spec import SoarRunSpec

# Cross-field checks the API server enforces before the operator sees a manifest. The same rules
# live in the pydantic validators, so `soar validate` and `kubectl apply` agree.
CEL_RULES = [
    {
        "rule": "self.evaluation.ks.all(k, k <= self.evaluation.samples)",
        "message": "evaluation.ks must not exceed evaluation.samples",
        "fieldPath": ".evaluation.ks",
    },
    {
        "rule": "self.mode == 'soar' || self.reward.kind == 'grounded'",
        "message": "reward.kind learnability needs mode soar",
        "fieldPath": ".reward.kind",
    },
    {
        "rule": "!has(self.model) || !has(self.model.dtype) || self.model.dtype != 'float16' || "
        "(has(self.teacher) && has(self.teacher.lora) && has(self.student) && "
        "has(self.student.lora))",
        "message": "model.dtype float16 needs LoRA for teacher and students; use bfloat16",
        "fieldPath": ".model.dtype",
    },
    {
        "rule": "(has(self.mode) && self.mode == 'evaluate-questions') == "
        "(has(self.freshStudent) && has(self.freshStudent.questions))",
        "message": "freshStudent.questions is set exactly when mode is evaluate-questions",
        "fieldPath": ".freshStudent.questions",
    },
]
DATA_RULES = [
    {
        "rule": "has(self.builtin) != (has(self.hardTrain) && has(self.hardTest))",
        "message": "set builtin, or both hardTrain and hardTest",
    },
    {
        "rule": "!has(self.builtin) || (!has(self.hardTrain) && !has(self.hardTest))",
        "message": "builtin and hardTrain/hardTest are exclusive",
    },
]

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Step", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
    {"name": "Promotions", "type": "integer", "jsonPath": ".status.promotions"},
    {"name": "Reward MA", "type": "string", "jsonPath": ".status.rewardMovingAverage"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

# Status is written by the operator only; every field is bounded so that a run of any length
# keeps a small object (the latest step record and evaluation, never a history).
CONDITION_SCHEMA = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "maxLength": 64},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string", "maxLength": 128},
        "message": {"type": "string", "maxLength": 2048},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
    },
}


def _field(kind: str, description: str, **bounds: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **bounds}


STATUS_SCHEMA = {
    "type": "object",
    "description": "Written by the operator: where the run stands and its latest results.",
    "properties": {
        "phase": _field(
            "string",
            "Pending, Running, Suspended, Succeeded or Failed.",
            enum=["Pending", "Running", "Suspended", "Succeeded", "Failed"],
        ),
        "reason": _field("string", "Why the run is in its phase, in CamelCase.", maxLength=128),
        "step": _field("integer", "Last committed outer step (0: none yet).", minimum=0),
        "totalSteps": _field("integer", "T: outer steps of the run.", minimum=0),
        "progress": _field("string", "step/totalSteps.", maxLength=32),
        "stage": _field(
            "string", "Stages running or about to run, comma-separated.", maxLength=256
        ),
        "attempt": _field("integer", "Highest attempt among those stages.", minimum=1),
        "promotions": _field("integer", "Students promoted so far.", minimum=0),
        "teacherReward": _field("number", "Teacher reward of the last committed step."),
        "rewardMovingAverage": _field(
            "string", "Moving average of the teacher reward, signed.", maxLength=32
        ),
        "baselineAccuracy": _field("number", "Baseline greedy accuracy on Q_R, last step."),
        "passAtK": {
            "type": "object",
            "description": "pass@k by k, from the latest evaluation on the hard test split.",
            "maxProperties": 16,
            "additionalProperties": {"type": "number"},
        },
        "passAtKStep": _field("integer", "Step after which passAtK was measured.", minimum=0),
        "lastCheckpoint": _field("string", "URI of the latest checkpoint.", maxLength=1024),
        "lastStepTime": _field(
            "string", "When the operator first saw the last step committed.", format="date-time"
        ),
        "lastPromotionStep": _field(
            "integer", "Step of the latest promotion (0: none); grounded reward only.", minimum=0
        ),
        "vendi": _field("number", "Standardised Vendi score of the last step's questions."),
        "lastFailure": _field(
            "string", "The latest failed stage attempt: Job, exit code, error line.", maxLength=1024
        ),
        "startTime": _field(
            "string",
            "When the run started, or resumed; activeDeadlineSeconds counts from it.",
            format="date-time",
        ),
        "queuedTime": _field(
            "string",
            "Since when every running stage is a Job held suspended (queued in Kueue); the "
            "deadline does not count this time.",
            format="date-time",
        ),
        "completionTime": _field("string", "When the run succeeded or failed.", format="date-time"),
        "observedGeneration": _field("integer", "metadata.generation last reconciled."),
        "message": _field("string", "One line on where the run stands.", maxLength=2048),
        "conditions": {
            "type": "array",
            "description": "Running, Suspended, Succeeded, Failed, CheckpointAvailable.",
            "maxItems": 8,
            "items": CONDITION_SCHEMA,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    },
}

# Keys of pydantic's JSON Schema that a structural CRD schema accepts as they are.
KEPT_KEYS = (
    "type",
    "description",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "enum",
)


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turn one pydantic JSON Schema node into an OpenAPI v3.0 structural schema node."""
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        return _structural({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union {node['anyOf']} in a CRD schema")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return {**_structural({**options[0], **rest}, defs), "nullable": True}
    out = {key: node[key] for key in KEPT_KEYS if node.get(key) is not None}
    if "const" in node:
        out["enum"] = [node["const"]]
    if "enum" in out:
        out.setdefault("type", "string")
    # JSON Schema 2020-12 gives exclusive bounds as numbers; OpenAPI v3.0 as booleans.
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(bound) is not None:
            out[plain], out[bound] = node[bound], True
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {k: _structural(v, defs) for k, v in node["properties"].items()}
        if node.get("required"):
            out["required"] = node["required"]
    if "items" in node:
        out["items"] = _structural(node["items"], defs)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        out["additionalProperties"] = _structural(extra, defs)
    elif out.get("type") == "object" and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True  # free-form Kubernetes objects
    return out


def spec_schema() -> dict[str, Any]:
    """openAPIV3Schema of .spec, with CEL rules attached."""
    raw = SoarRunSpec.model_json_schema()
    schema = _structural(raw, raw.get("$defs", {}))
    schema["x-kubernetes-validations"] = CEL_RULES
    schema["properties"]["data"]["x-kubernetes-validations"] = DATA_RULES
    return schema


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": STATUS_SCHEMA,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML document committed in crds/soarrun.yaml."""
    header = "# Generated by `soar crd` from soar/spec.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
