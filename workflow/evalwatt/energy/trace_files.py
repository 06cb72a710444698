"""Reading energy traces and timelines from their files (the maths of a trace is
``evalwatt.energy.trace``).

Two trace formats are read:

* CSV as recorded in ``shared/data/traces`` (``t_unix, energy_mj, power_mw, ...`` and an
  optional ``gpu`` column when several GPUs were sampled). The format carries no metadata: a
  CSV trace is taken to be NVML's measured GPU counter, the only thing recorded in it;
* the in-job sampler's Parquet (``evalwatt.sampling``), whose footer metadata
  (``evalwatt.trace``) names the source (``nvml``, ``rapl``, ``cpu-model``), the domain
  (``gpu``, ``cpu``) and whether the counter is a model estimate. An estimate's counter column
  is ``est_energy_mj``, never ``energy_mj``. A Parquet file without that footer is refused:
  nothing in it says whether its numbers are a measured GPU counter, and guessing would put a
  model's estimate or a foreign table in the measured columns.

Reading is strict. A file either reads into series in which every sample has a finite time, a
finite counter that is not negative and, where there is one, a finite power that is not
negative, or it is refused with a ``TraceError`` naming the file, the line (CSV) or row
(Parquet), the column and the bad value. Nothing is skipped silently. In particular:

* a CSV whose last line has no line end was cut while being written, and the cut can leave a
  partial number that still parses (``2214`` for ``22145182``): the file is refused, naming
  that line (delete the line to use the samples before it), never read as if complete;
* a row with fewer or more fields than the header, an empty, non-numeric, NaN or infinite
  value, or a second sample of one device at the same time is refused;
* rows are sorted by time (a CSV of several GPUs interleaves them); the counter checks of
  ``evalwatt.energy.trace`` run on the sorted samples, so a clock that stepped back cannot
  hide behind the sort.

A counter empty in *every* row of a device is that device missing (``Trace.missing``); a
counter empty in some rows only is a fault of the file (refused, as above), unless the
sampler's metadata declares a thinned counter (``counter_every_rounds`` > 1: the rows between
its reads have power only). A device the sampler's metadata lists but no row has is missing
too; a counter's wraps are repaired where unambiguous (``evalwatt.energy.trace.unwrap``).

A timeline (``read_timeline``) is a JSON object of marks in unix seconds, and counts such as
``output_tokens``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from evalwatt.energy.trace import COUNTER_EVERY, Series, Trace, TraceError, positive, unwrap

MEASURED_COUNTER = "energy_mj"
ESTIMATED_COUNTER = "est_energy_mj"
TIME = "t_unix"
POWER = "power_mw"
CSV_DEVICE = "gpu"
PARQUET_DEVICE = "device"
FOOTER_KEY = b"evalwatt.trace"
DOMAINS = ("gpu", "cpu")
# Counts a timeline may carry besides its marks (whole numbers, not times).
COUNTS = ("output_tokens",)


@dataclass(frozen=True)
class _Sample:
    where: str  # "path:line" (CSV) or "path: row N" (Parquet), for messages
    at: str  # "line N" or "row N"
    device: str
    t: float
    energy: float | None  # None: a row between the reads of a thinned counter
    power: float | None


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any, where: str, column: str) -> float:
    """A finite number from a CSV field or a Parquet cell, or a TraceError saying why not."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise TraceError(f"{where}: {column} is empty")
    if isinstance(value, bool):
        raise TraceError(f"{where}: {column} is {value}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise TraceError(f"{where}: {column} is {_show(value)}, not a number") from None
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise TraceError(f"{where}: {column} is {_show(value)}, not a finite number")
    return number


# Unix seconds reach 1e11 in the year 5138; milliseconds since 1973 are above it. A time this
# large is a trace or a timeline written in milliseconds, and its windows would miss every
# sample by hours: said at once, with the fix.
_MAX_UNIX_S = 1e11


def _unix_s(value: Any, where: str, column: str) -> float:
    """A time in unix seconds, or a TraceError (a time in milliseconds says so)."""
    t = _number(value, where, column)
    if abs(t) >= _MAX_UNIX_S:
        raise TraceError(
            f"{where}: {column} is {_show(value)}, which looks like milliseconds since the "
            f"epoch ({t / 1000:.3f} s); allowed: unix seconds (divide by 1000)"
        )
    return t


def _sample(
    where: str,
    at: str,
    *,
    device: Any,
    t: Any,
    energy: Any,
    power: Any,
    counter: str,
    device_key: str,
    thinned: bool = False,
) -> _Sample:
    """One checked sample: a device, a finite time, a counter >= 0 (or, in a ``thinned``
    counter, none), a power >= 0 or None."""
    if device is None or not str(device).strip():
        raise TraceError(f"{where}: {device_key} (the device of the sample) is empty")
    if thinned and energy is None:
        return _Sample(where, at, str(device), _unix_s(t, where, TIME), None, _power(power, where))
    e = _number(energy, where, counter)
    if e < 0:
        raise TraceError(
            f"{where}: {counter} is {_show(energy)}; an energy counter is never negative"
        )
    return _Sample(where, at, str(device), _unix_s(t, where, TIME), e, _power(power, where))


def _power(power: Any, where: str) -> float | None:
    if power is None or (isinstance(power, str) and not power.strip()):
        return None
    p = _number(power, where, POWER)
    if p < 0:
        raise TraceError(f"{where}: {POWER} is {_show(power)}; a power is never negative")
    return p


def _empty_counters(rows: list[tuple[Any, Any]]) -> dict[str, int]:
    """Devices whose counter is empty in every one of their rows -> their row count.
    ``rows`` are (device, counter) as read; a device that is itself empty is left to
    ``_sample`` to refuse."""
    empty: dict[str, bool] = {}
    count: dict[str, int] = defaultdict(int)
    for device, energy in rows:
        if device is None or not str(device).strip():
            continue
        key = str(device)
        blank = energy is None or (isinstance(energy, str) and not energy.strip())
        empty[key] = empty.get(key, True) and blank
        count[key] += 1
    return {d: count[d] for d, all_blank in empty.items() if all_blank}


def _missing(
    path: Path, counter: str, empty: dict[str, int], samples: list[_Sample]
) -> dict[str, str]:
    """Why each device with an empty counter is missing; a TraceError when none is left."""
    missing = {
        d: f"its counter ({counter}) is empty in all {n} of its rows: it could not be read"
        for d, n in sorted(empty.items())
    }
    if missing and not samples:
        raise TraceError(
            f"{path}: the counter ({counter}) is empty in every row of every device "
            f"({', '.join(sorted(missing))}): nothing was measured"
        )
    return missing


def _listed_devices(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Devices the sampler's metadata says it opened (NVML ``devices``, RAPL ``zones``), by
    the name their rows carry in the ``device`` column."""
    listed: dict[str, dict[str, Any]] = {}
    devices = info.get("devices")
    if isinstance(devices, list):
        for entry in devices:
            if isinstance(entry, dict) and "nvml_index" in entry:
                listed[str(entry["nvml_index"])] = entry
    zones = info.get("zones")
    if isinstance(zones, list):
        for zone in zones:
            if isinstance(zone, str):
                listed[zone] = {}
    return listed


def _build(path: Path, samples: list[_Sample], counter_every: int = 1) -> dict[str, Series]:
    if not samples:
        raise TraceError(f"{path}: no samples, only a header")
    grouped: dict[str, list[_Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.device].append(sample)
    series = {}
    for device, items in sorted(grouped.items()):
        items.sort(key=lambda s: s.t)  # stable: equal times keep their order in the file
        for a, b in itertools.pairwise(items):
            if a.t == b.t:
                raise TraceError(
                    f"{b.where}: {TIME} {b.t!r} repeats the time of {a.at} for device {device}"
                )
        reads = [s for s in items if s.energy is not None]
        if len(reads) < 2:
            what = "samples" if len(reads) == len(items) else "counter reads"
            raise TraceError(
                f"{path}: device {device}: fewer than two {what}, no energy can be derived"
            )
        series[device] = Series(
            device=device,
            t_unix=[s.t for s in reads],
            energy_mj=[s.energy for s in reads if s.energy is not None],
            power_mw=[s.power for s in reads],
            row_t_unix=[s.t for s in items] if counter_every > 1 else None,
            row_power_mw=[s.power for s in items] if counter_every > 1 else None,
        )
    return series


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise TraceError(f"{path}: no such {what} file")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory, not a {what} file")


def _read_text(path: Path, what: str) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:  # a BOM is not data
            return fh.read()
    except UnicodeDecodeError as exc:
        raise TraceError(
            f"{path}: not a UTF-8 text {what} (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start})"
        ) from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _read_csv(path: Path) -> Trace:
    text = _read_text(path, "CSV trace")
    if not text.strip():
        raise TraceError(
            f"{path}: empty file, expected a header with {TIME} and {MEASURED_COUNTER}"
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        header = next(reader)
        records = [(reader.line_num, record) for record in reader]
    except csv.Error as exc:
        raise TraceError(f"{path}:{reader.line_num}: not CSV ({exc})") from None
    doubled = sorted({c for c in header if header.count(c) > 1})
    if doubled:
        raise TraceError(f"{path}:1: column {doubled[0]} appears twice in the header")
    for column in (TIME, MEASURED_COUNTER):
        if column not in header:
            raise TraceError(
                f"{path}:1: no {column} column (header: {_show(','.join(header), 80)})"
            )
    records = [(line, record) for line, record in records if record]  # blank lines
    if records and not text.endswith(("\n", "\r")):
        line, record = records[-1]
        raise TraceError(
            f"{path}:{line}: the last line has no line end, so the file was cut while being "
            f"written ({_show(','.join(record))}); delete that line to use the samples before it"
        )
    col = {
        name: header.index(name)
        for name in (TIME, MEASURED_COUNTER, POWER, CSV_DEVICE)
        if name in header
    }
    for line, record in records:
        if len(record) != len(header):
            raise TraceError(
                f"{path}:{line}: {len(record)} fields where the header has {len(header)} "
                f"({_show(','.join(record))})"
            )
    empty = _empty_counters(
        [
            (record[col[CSV_DEVICE]] if CSV_DEVICE in col else "0", record[col[MEASURED_COUNTER]])
            for _, record in records
        ]
    )
    samples = []
    for line, record in records:
        where = f"{path}:{line}"
        if (record[col[CSV_DEVICE]] if CSV_DEVICE in col else "0") in empty:
            continue
        samples.append(
            _sample(
                where,
                f"line {line}",
                device=record[col[CSV_DEVICE]] if CSV_DEVICE in col else "0",
                t=record[col[TIME]],
                energy=record[col[MEASURED_COUNTER]],
                power=record[col[POWER]] if POWER in col else None,
                counter=MEASURED_COUNTER,
                device_key=CSV_DEVICE,
            )
        )
    missing = _missing(path, MEASURED_COUNTER, empty, samples)
    return Trace(
        path=str(path),
        source="nvml",
        domain="gpu",
        is_estimate=False,
        series=_build(path, samples),
        metadata={"format": "csv"},
        missing=missing,
    )


def _footer(path: Path, footer: dict[bytes, bytes]) -> dict[str, Any]:
    """The sampler's metadata from a Parquet footer, checked."""
    name = FOOTER_KEY.decode()
    raw = footer.get(FOOTER_KEY)
    if raw is None:
        raise TraceError(
            f"{path}: no {name} metadata in the Parquet footer, so nothing says what its numbers "
            "measure (source, domain, is_estimate); only traces written by evalwatt's sampler "
            "are read"
        )
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: footer metadata {name} is not JSON ({exc})") from None
    if not isinstance(info, dict):
        raise TraceError(f"{path}: footer metadata {name} is {_show(info)}, not a JSON object")
    source, domain, is_estimate = info.get("source"), info.get("domain"), info.get("is_estimate")
    if not isinstance(source, str) or not source.strip():
        raise TraceError(
            f"{path}: footer metadata {name}: source is {_show(source)}, expected a name"
        )
    if domain not in DOMAINS:
        raise TraceError(
            f"{path}: footer metadata {name}: domain is {_show(domain)}, expected one of "
            f"{', '.join(DOMAINS)}"
        )
    if not isinstance(is_estimate, bool):
        raise TraceError(
            f"{path}: footer metadata {name}: is_estimate is {_show(is_estimate)}, expected "
            "true or false"
        )
    return info


@dataclass(frozen=True)
class _Part:
    """One Parquet file of a trace: its footer metadata and its rows, checked."""

    path: Path
    info: dict[str, Any]
    counter_every: int
    counter: str
    rows: list[dict[str, Any]]


def _parquet_part(path: Path, *, may_be_empty: bool = False) -> _Part:
    _check_file(path, "trace")
    try:
        pf = pq.ParquetFile(path)
        footer = pf.metadata.metadata or {}
        table = pf.read()
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TraceError(f"{path}: not a readable Parquet file ({reason})") from None
    info = _footer(path, footer)
    counter_every = info.get(COUNTER_EVERY, 1)
    if isinstance(counter_every, bool) or not isinstance(counter_every, int) or counter_every < 1:
        raise TraceError(
            f"{path}: footer metadata {FOOTER_KEY.decode()}: {COUNTER_EVERY} is "
            f"{_show(counter_every)}, expected a whole number >= 1"
        )
    if table.num_rows == 0 and not may_be_empty:
        raise TraceError(f"{path}: no rows, so no samples")
    is_estimate = bool(info["is_estimate"])
    counter = ESTIMATED_COUNTER if is_estimate else MEASURED_COUNTER
    for column in (TIME, counter):
        if column not in table.column_names:
            raise TraceError(f"{path}: no {column} column (is_estimate={is_estimate})")
    for column in (TIME, counter, POWER):
        if column in table.column_names:
            kind = table.schema.field(column).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                raise TraceError(f"{path}: column {column} holds {kind}, expected numbers")
    wanted = [c for c in (TIME, counter, POWER, PARQUET_DEVICE) if c in table.column_names]
    return _Part(path, info, counter_every, counter, table.select(wanted).to_pylist())


# What every part of one trace must agree on: they are one probe's samples.
_SAME_IN_PARTS = ("source", "domain", "is_estimate", COUNTER_EVERY)


def _check_parts(parts: list[_Part]) -> None:
    """The parts are one trace, in order: the same probe, and each the part its footer
    says (the sampler numbers them from 0) where the footer numbers them."""
    first = parts[0]
    for i, part in enumerate(parts):
        for key in _SAME_IN_PARTS:
            if part.info.get(key) != first.info.get(key):
                raise TraceError(
                    f"{part.path}: {key} is {_show(part.info.get(key))} where {first.path} "
                    f"has {_show(first.info.get(key))}: not parts of one trace"
                )
        number = part.info.get("part")
        if number is not None and number != i:
            raise TraceError(
                f"{part.path}: footer metadata says part {_show(number)}, read as part {i} "
                "of its trace: a part is missing or out of order"
            )


def _read_parquet(paths: list[Path]) -> Trace:
    # a part may have no rows (a probe sampled nothing before the job ended); the trace may not
    parts = [_parquet_part(p, may_be_empty=len(paths) > 1) for p in paths]
    if len(parts) > 1:  # one file alone (any part) is read as it is
        _check_parts(parts)
        if not any(part.rows for part in parts):
            raise TraceError(f"{parts[0].path} and its later parts: no rows, so no samples")
    first = parts[0]
    label = first.path if len(parts) == 1 else Path(f"{first.path} (+{len(parts) - 1} parts)")
    info, counter, counter_every = first.info, first.counter, first.counter_every
    empty = _empty_counters(
        [(row.get(PARQUET_DEVICE, "0"), row[counter]) for p in parts for row in p.rows]
    )
    samples = [
        _sample(
            f"{part.path}: row {i}",
            f"row {i}" if len(parts) == 1 else f"{part.path.name} row {i}",
            device=row.get(PARQUET_DEVICE, "0"),
            t=row[TIME],
            energy=row[counter],
            power=row.get(POWER),
            counter=counter,
            device_key=PARQUET_DEVICE,
            thinned=counter_every > 1,
        )
        for part in parts
        for i, row in enumerate(part.rows, start=1)
        if str(row.get(PARQUET_DEVICE, "0")) not in empty
    ]
    missing = _missing(label, counter, empty, samples)
    series = _build(label, samples, counter_every)
    listed = _listed_devices(info)
    for device, entry in listed.items():
        if device not in series and device not in missing:
            uuid = f" ({entry['uuid']})" if entry.get("uuid") else ""
            missing[device] = f"listed in the trace metadata{uuid} but no row has it"
    repairs: list[str] = []
    for device in list(series):
        entry = listed.get(device, {})
        range_mj = positive(entry.get("counter_range_mj", info.get("counter_range_mj")))
        series[device], fixed = unwrap(
            series[device], range_mj, positive(entry.get("power_limit_mw"))
        )
        repairs += fixed
    return Trace(
        path=str(label),
        source=str(info["source"]),
        domain=str(info["domain"]),
        is_estimate=bool(info["is_estimate"]),
        series=series,
        metadata=info,
        missing=missing,
        repairs=repairs,
    )


def read_trace(path: Path | str) -> Trace:
    """Read a CSV or Parquet energy trace; any fault is a TraceError naming the file."""
    path = Path(path)
    _check_file(path, "trace")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet([path])
    raise TraceError(f"{path}: unknown trace format (expected .csv or .parquet)")


def read_trace_parts(paths: Sequence[Path | str]) -> Trace:
    """Read the parts of one sampler trace, in order, as one trace (a job that ran several
    cells closed a part after each: evalwatt.sampling.sampler). Every part must be there and
    read (the sampler's status lists them: ``TraceInfo.files``); a part missing, unreadable,
    from another probe or out of order is a TraceError naming the file."""
    if not paths:
        raise TraceError("no trace part to read")
    if len(paths) == 1:
        return read_trace(paths[0])
    for path in map(Path, paths):
        if path.suffix.lower() != ".parquet":
            raise TraceError(f"{path}: only the sampler's Parquet traces come in parts")
    return _read_parquet([Path(p) for p in paths])


def _no_repeats(path: Path) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise TraceError(f"{path}: mark {repeated[0]} appears twice")
        return dict(items)

    return pairs


def read_timeline(path: Path | str) -> dict[str, float]:
    """Read phase marks (unix seconds) and counts such as ``output_tokens``.

    The file is a JSON object of marks, flat or under a ``marks`` key (as the job runtime writes
    it). Every value must be a finite number, and a count (``COUNTS``) a whole number of zero
    or more; anything else is a TraceError naming the file, the mark and the value, never
    skipped (a mark written as a string would otherwise just vanish)."""
    path = Path(path)
    _check_file(path, "timeline")
    text = _read_text(path, "timeline")
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats(path))
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{path}:{exc.lineno}: not JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise TraceError(
            f"{path}: expected a JSON object of marks, got {type(data).__name__} {_show(data)}"
        )
    marks = data.get("marks", data)
    if not isinstance(marks, dict):
        raise TraceError(f"{path}: marks is {_show(marks)}, expected a JSON object of marks")
    out = {}
    for key, value in marks.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TraceError(
                f"{path}: mark {key} is {_show(value)}, expected a number (unix seconds)"
            )
        if key in COUNTS:
            number = _number(value, str(path), f"mark {key}")
        else:
            number = _unix_s(value, str(path), f"mark {key}")
        if key in COUNTS and (number < 0 or not number.is_integer()):
            raise TraceError(f"{path}: {key} is {_show(value)}, expected a whole number >= 0")
        out[key] = number
    return out
