"""Keys and types of every packaged config: one dataclass per YAML file in this folder.

A class here says which keys a stage accepts and what type each holds; the YAML of the same name
beside it gives every key its default value and the comment that explains it. Neither repeats the
other: the fields have no defaults (OmegaConf reads them as ``???``, and ``load_config`` fails if
the packaged YAML leaves one unset or sets a key the class lacks). See :mod:`gream_verl.config`.

``dict[str, Any]`` marks an open mapping passed through to another program (LLaMA-Factory
arguments, verl overrides, chat-template arguments): its keys are that program's to check.
``Any`` is for a key that takes values of several types (``rl.enabled: auto | true | false``).
A field with ``metadata={"defaults": NAME}`` starts from the packaged ``NAME.yaml``; one with
``metadata={"overlays": True}`` maps names to partial configs of its own class (the presets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# --- data.yaml: gream data stats | convert | enrich ----------------------------------------------


@dataclass
class RawDumpConfig:
    k: int
    on_bad_lines: str
    reviews_per_item: int
    review_chars: int


@dataclass
class TeacherClientConfig:
    """An OpenAI-compatible teacher endpoint (arguments of ``gream_verl.teacher.TeacherConfig``)."""

    base_url: str | None
    model: str | None
    api_key: str | None
    cache_dir: str | None
    max_concurrency: int
    max_retries: int
    timeout: float
    temperature: float
    max_tokens: int


@dataclass
class EnrichConfig(TeacherClientConfig):
    fields: list[str]
    max_field_chars: int
    max_words: int
    backoff: float


@dataclass
class TableItemTextConfig:
    """Item-table column(s) for each text field: a name, a list of names, or None."""

    title: Any
    description: Any
    brand: Any
    categories: Any


@dataclass
class TableConfig:
    """Column names of a plain interaction table (CSV, TSV, Parquet)."""

    user: str
    item: str
    timestamp: str
    rating: str | None
    min_rating: float | None
    item_text: TableItemTextConfig


@dataclass
class DataConfig:
    min_length: int
    max_history: int
    format: str
    repeated_items: str
    raw: RawDumpConfig
    table: TableConfig
    enrich: EnrichConfig


# --- index.yaml: gream index build ---------------------------------------------------------------


@dataclass
class EmbeddingConfig:
    model_path: str | None
    path: str | None
    fields: Any  # a list of names, or one string "title,description" (gream_verl.index.build.embedding_fields)
    use_enriched: bool
    pooling: str
    normalize: bool
    batch_size: int
    max_length: int
    device: str
    cache: bool
    cache_dir: str | None


@dataclass
class CollaborativeConfig:
    enabled: bool
    dim: int
    window: int
    weight: float
    seed: int


@dataclass
class RQKMeansConfig:
    levels: int
    codebook_size: int
    balanced: bool
    iters: int
    tol: float
    init: str
    seed: int
    chunk_size: int
    max_points_per_centroid: int | None
    device: str


@dataclass
class CollisionConfig:
    mode: str


@dataclass
class IndexConfig:
    embedding: EmbeddingConfig
    collaborative: CollaborativeConfig
    rqkmeans: RQKMeansConfig
    collision: CollisionConfig


# --- eval.yaml: gream eval direct | reason, gream recommend --------------------------------------


@dataclass
class ReasonConfig:
    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    answer: str
    answer_beams: int
    seed: int
    server: str | None
    server_model: str | None
    api: str
    timeout: float
    max_concurrency: int
    max_retries: int


@dataclass
class ServeConfig:
    host: str
    port: int
    max_batch: int
    max_wait_ms: float
    max_queue: int
    max_body_bytes: int
    max_new_tokens: int
    graceful_timeout_s: int
    keep_alive_s: int
    log_level: str


@dataclass
class EvalConfig:
    model: str | None
    data: str | None
    index: str | None
    split: str
    max_history: int
    limit: int | None
    batch_size: int
    beams: int
    prompt_template: int
    chat_template_kwargs: dict[str, Any]
    engine: str
    device: str
    dtype: str
    out: str | None
    save_predictions: str | None
    progress: bool
    recall_ks: list[int]
    ndcg_ks: list[int]
    pass_ks: list[int]
    reason: ReasonConfig
    serve: ServeConfig


# --- rl_data.yaml: gream rl build ----------------------------------------------------------------


@dataclass
class RlDataConfig:
    mode: str
    max_history: int
    max_train: int | None
    max_val: int | None
    seed: int
    ability: str


# --- sft_data.yaml: gream sft build --------------------------------------------------------------


@dataclass
class SampledTaskConfig:
    enabled: bool
    max_per_user: int | None
    max_total: int | None


@dataclass
class TaskSwitch:
    enabled: bool


@dataclass
class PreferenceTaskConfig:
    enabled: bool
    max_users: int | None
    summaries_file: str | None


@dataclass
class AlignTasksConfig:
    seqrec: SampledTaskConfig
    fusedrec: SampledTaskConfig
    item2index: TaskSwitch
    index2item: TaskSwitch
    sequence: TaskSwitch
    preference: PreferenceTaskConfig


@dataclass
class ReasoningDataConfig:
    enabled: bool
    max_samples: int | None


@dataclass
class TeacherSection(TeacherClientConfig):
    mode: str


@dataclass
class CurriculumSection:
    enabled: bool
    gamma: float
    num_epochs: int
    curriculum_epochs: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    world_size: int


@dataclass
class SftDataConfig:
    seed: int
    max_history: int
    max_description_chars: int
    tasks: AlignTasksConfig
    reasoning: ReasoningDataConfig
    teacher: TeacherSection
    curriculum: CurriculumSection


# --- quickstart.yaml: gream quickstart -----------------------------------------------------------


@dataclass
class QuickstartDataSection:
    max_users: int | None


@dataclass
class SASRecSection:
    hidden: int
    blocks: int
    heads: int
    dropouts: list[float]
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    eval_every: int
    max_minutes: float | None


@dataclass
class BaselinesSection:
    enabled: bool
    sasrec: SASRecSection


@dataclass
class TinyModelSection:
    vocab_size: int
    hidden_size: int
    num_layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tie_word_embeddings: bool
    attention_dropout: float
    new_token_noise: float


@dataclass
class RlRunSection:
    """What every CPU SRPO run reads: its verl overrides, time limit and RL data."""

    cpu_timeout_minutes: float
    cpu_overrides: dict[str, Any]  # verl's Hydra keys: verl checks them
    mode: str
    max_train: int | None
    max_val: int | None


@dataclass
class RlSection(RlRunSection):
    enabled: Any  # auto | true | false (checked by gream_verl.quickstart)
    cpu_fallback: bool


@dataclass
class QuickstartConfig:
    name: str | None
    runs_dir: str
    data_dir: str | None
    dataset: str
    seed: int
    max_history: int
    threads: int | None
    data: QuickstartDataSection
    baselines: BaselinesSection
    index: IndexConfig = field(metadata={"defaults": "index"})
    model: TinyModelSection
    sft_data: SftDataConfig = field(metadata={"defaults": "sft_data"})
    sft: dict[str, Any]  # LLaMA-Factory arguments: LLaMA-Factory checks them
    eval: EvalConfig = field(metadata={"defaults": "eval"})
    rl: RlSection
    presets: dict[str, Any] = field(metadata={"overlays": True})


# --- ablation.yaml: gream ablate ------------------------------------------------------------------


@dataclass
class AblationSftRow:
    """One row of the SFT table (paper Table 4): what D_align holds and which datasets train, in order."""

    label: str
    index: str  # text (the paper's RQ-KMeans over text) | collaborative (text + co-purchase vectors)
    sequence: bool  # add the whole-sequence rows (ours) to D_align
    train: list[str]  # LLaMA-Factory datasets trained one after the other, e.g. [gream_align, gream_reason]


@dataclass
class AblationRlRow:
    """One row of the RL table (paper Table 3)."""

    label: str
    reward: str  # binary (exact match) | residual ((l/H)^beta)
    estimator: str  # grpo | srpo (GRPO + bonus-calibrated pass@k advantage)


@dataclass
class AblationRlSection(RlRunSection):
    start_from: str  # the SFT row whose model every RL row starts from
    steps: int
    dynamic_sampling: bool


@dataclass
class AblationConfig:
    name: str
    runs_dir: str
    data_dir: str | None
    dataset: str
    seeds: list[int]
    max_history: int
    threads: int | None
    teacher: str
    bootstrap_resamples: int
    data: QuickstartDataSection
    index: IndexConfig = field(metadata={"defaults": "index"})
    model: TinyModelSection
    sft_data: SftDataConfig = field(metadata={"defaults": "sft_data"})
    sft: dict[str, Any]  # LLaMA-Factory arguments: LLaMA-Factory checks them
    epochs: int
    eval: EvalConfig = field(metadata={"defaults": "eval"})
    reason_limit: int | None
    sft_rows: dict[str, AblationSftRow]
    rl: AblationRlSection
    rl_rows: dict[str, AblationRlRow]
    presets: dict[str, Any] = field(metadata={"overlays": True})


SCHEMAS: dict[str, type] = {
    "ablation": AblationConfig,
    "data": DataConfig,
    "eval": EvalConfig,
    "index": IndexConfig,
    "quickstart": QuickstartConfig,
    "rl_data": RlDataConfig,
    "sft_data": SftDataConfig,
}
