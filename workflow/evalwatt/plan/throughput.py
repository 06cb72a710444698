"""The throughput model of the estimate: how fast a model's server generates, by model class.

A cell's generation is memory-bandwidth bound decoding plus compute-bound prefill; both rates
come from a table (``config/throughput.yaml``, every number with its source) by model class:
device and GPU type, dense or MoE, active parameters and weight bits. Decoding reads every
active weight once per step, so a row's rates scale with its reference model's active
parameters over the model's. Output tokens per second saturate with the requests in flight:
``T(c) = T_max · c / (c + c_half)``, ``c`` bounded by the samples and by the batch the server's
KV cache held in the source. A calibration file (a run's measured rates) wins over the table
for the models and ``max_connections`` it measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from evalwatt.base.paths import REPO_DIR
from evalwatt.base.yamlfile import load_yaml
from evalwatt.config.load import Config, ConfigError
from evalwatt.config.model_entry import Backend, ModelEntry
from evalwatt.contracts.contract import Record, read_contract
from evalwatt.contracts.plan import Calibration, ModelCalibration

DEFAULT_TABLE = REPO_DIR / "config" / "throughput.yaml"


class PrecisionFactor(Record):
    """How much faster (or slower) a model of these weight bits decodes than the rows' BF16."""

    weight_bits: int
    factor: float = Field(gt=0)
    source: str


class ThroughputRow(Record):
    """One model class and its measured (or derived) rates, with the source of each number."""

    name: str
    device: Literal["gpu", "cpu"]
    server: Backend | None = Field(
        None, description="the inference server the rates are of (a backend); null: any"
    )
    gpu: str | None = Field(description="a substring of cluster.gpu_model; null for cpu rows")
    architecture: Literal["dense", "moe"]
    active_params_b: tuple[float, float] = Field(description="lo < active <= hi, billions")
    reference_active_params_b: float = Field(gt=0)
    gpus: int = Field(ge=0, description="GPUs of the source's server")
    tokens_per_s_max: float = Field(gt=0)
    half_saturation: float = Field(ge=0, description="requests in flight at half T_max")
    max_batch: int = Field(ge=1, description="the most requests the source's server held")
    prefill_tokens_per_s: float = Field(gt=0)
    points: tuple[tuple[int, float], ...] = Field(
        description="the source's (requests in flight, output tokens/s) the fit is checked on"
    )
    source: str

    def tokens_per_s(self, in_flight: float) -> float:
        """Aggregate output tokens per second with ``in_flight`` requests (at most max_batch)."""
        c = min(in_flight, self.max_batch)
        return self.tokens_per_s_max * c / (c + self.half_saturation)


class ThroughputTable(Record):
    """The file ``planner.throughput_table`` names."""

    version: Literal[1, 2]
    """2 since rows name their server (``ThroughputRow.server``); a version 1 table's rows
    serve any backend."""
    default_gpu: str
    precision_factors: tuple[PrecisionFactor, ...]
    rows: tuple[ThroughputRow, ...]


def _version_of(path: Path, what: str) -> tuple[Path, int]:
    """The file's resolved path and modification time: the key of its cached parse."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    return path.resolve(), mtime


@lru_cache(maxsize=8)
def _read_table(path: Path, mtime_ns: int) -> ThroughputTable:
    """Parsed once per file version: the estimate runs for every job of a DAG."""
    try:
        return ThroughputTable.model_validate(load_yaml(path, "throughput table"))
    except ValidationError as exc:
        raise ConfigError(f"{path}: not a throughput table: {exc}") from None


def read_table(path: Path) -> ThroughputTable:
    return _read_table(*_version_of(path, "throughput table"))


@lru_cache(maxsize=8)
def _read_calibration(path: Path, mtime_ns: int) -> Calibration:
    return read_contract(Calibration, path)


def read_calibration(path: Path) -> Calibration:
    return _read_calibration(*_version_of(path, "calibration file"))


def table_of(config: Config) -> ThroughputTable:
    written = config.planner.throughput_table
    return read_table(Path(written) if written else DEFAULT_TABLE)


def calibration_of(config: Config) -> Calibration | None:
    written = config.planner.calibration
    return read_calibration(Path(written)) if written else None


@dataclass(frozen=True)
class ModelRates:
    """The rates the estimate uses for one model on this cluster, and where they come from."""

    model: str
    row: ThroughputRow | None
    """The table's row of the model's class; None: no row (``expected_s_per_sample`` then)."""
    scale: float
    """Active-parameter and precision scaling of the row's rates."""
    calibrated: ModelCalibration | None
    note: str
    """How the row was chosen, in words (for the preview)."""

    def decode_tokens_per_s(self, in_flight: float) -> float | None:
        """Output tokens per second with ``in_flight`` requests; None without a row."""
        if self.row is None:
            return None
        return self.row.tokens_per_s(in_flight) * self.scale

    def prefill_tokens_per_s(self) -> float | None:
        return None if self.row is None else self.row.prefill_tokens_per_s * self.scale

    def measured_tokens_per_s(self, max_connections: int) -> float | None:
        """A calibration's effective output tokens per second at this max_connections."""
        if self.calibrated is None:
            return None
        return self.calibrated.tokens_per_s.get(str(max_connections))


def _active(model: ModelEntry) -> float:
    return model.active_params_b or model.total_params_b


def _rows_for(
    table: ThroughputTable, device: str, gpu_model: str
) -> tuple[list[ThroughputRow], str]:
    if device == "cpu":
        return [r for r in table.rows if r.device == "cpu"], "cpu rows"
    named = [r for r in table.rows if r.device == "gpu" and r.gpu and r.gpu in gpu_model]
    if named:
        return named, f"{named[0].gpu} rows"
    fallback = [r for r in table.rows if r.device == "gpu" and r.gpu == table.default_gpu]
    return fallback, f"no row for GPU {gpu_model!r}: the {table.default_gpu} rows"


def other_server(row: ThroughputRow, backend: Backend) -> str:
    """What the preview says of a row measured on another server than the model's: its
    rates may be far off (transformers serve decoded 8-11 times slower than vLLM's row on an
    H100, docs/running.md), so the user calibrates before sizing on them."""
    return (
        f"; {row.server}'s rates, no {backend} row for this class: calibrate on a run with "
        f"backend {backend} before sizing (evalwatt preview-check --write-calibration)"
    )


def match(table: ThroughputTable, model: ModelEntry, device: str, gpu_model: str) -> ModelRates:
    """The row of ``model``'s class, scaled to its active parameters and weight bits: the
    first of its own server (or of any), else the first of another server, said so."""
    rows, where = _rows_for(table, device, gpu_model)
    arch = "moe" if model.moe else "dense"
    active = _active(model)
    fits = [
        row
        for row in rows
        if row.architecture == arch and row.active_params_b[0] < active <= row.active_params_b[1]
    ]
    if not fits:
        note = f"{where}: none for {arch} with {active:g}B active: expected_s_per_sample"
        return ModelRates(model.name, None, 1.0, None, note)
    own = [row for row in fits if row.server in (None, model.backend)]
    row = (own or fits)[0]
    factors = {p.weight_bits: p.factor for p in table.precision_factors}
    scale = row.reference_active_params_b / active * factors.get(model.weight_bits, 1.0)
    note = f"{where}, {row.name} x {scale:.3g}" + ("" if own else other_server(row, model.backend))
    return ModelRates(model.name, row, scale, None, note)


_RATES: dict[tuple[int, str, str], tuple[Config, ModelRates]] = {}


def model_rates(config: Config, model: str, device: str) -> ModelRates:
    """The rates of ``model`` served on ``device`` (gpu or cpu) of this run's cluster, with
    the calibration's measurements where it has them. Worked out once per config object (the
    estimate asks for them for every cell of every job of a DAG): the cache holds the config,
    so its id cannot name another config while the entry lives."""
    key = (id(config), model, device)
    cached = _RATES.get(key)
    if cached is not None and cached[0] is config:
        return cached[1]
    if len(_RATES) > 256:
        _RATES.clear()
    rates = _model_rates(config, model, device)
    _RATES[key] = (config, rates)
    return rates


def _model_rates(config: Config, model: str, device: str) -> ModelRates:
    entry = config.model(model)
    rates = match(table_of(config), entry, device, config.cluster.gpu_model)
    calibration = calibration_of(config)
    measured = calibration.models.get(model) if calibration else None
    if measured is None:
        return rates
    return ModelRates(model, rates.row, rates.scale, measured, rates.note + ", calibrated")
