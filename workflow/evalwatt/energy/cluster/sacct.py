"""Slurm's accounting: ``sacct``'s ConsumedEnergyRaw of a job (joules, node level).

What it is: the energy of the job's *nodes* as the site's ``acct_gather_energy`` plugin reads
it (IPMI, RAPL, ...), not the energy of its GPUs; it means something for the job only when the
job had its node to itself. What it is not:

* a measurement where the site has no energy plugin (``AcctGatherEnergyType =
  acct_gather_energy/none``): Slurm then records 0 or nothing, which evalwatt keeps as a null
  with that reason, **never 0**; Slurm's "no value" (NO_VAL64, 2^64 - 2) likewise;
* a GPU figure on NVIDIA: ``acct_gather_energy/gpu`` reads AMD GPUs only (a note says so);
* well resolved on short jobs: the plugin samples every 30 s by default.

Exclusivity: any other job on the job's node(s) while it ran (``sacct -a -N``) flags it as
not exclusive. Where sacct may hide other users' jobs (``PrivateData`` includes ``jobs`` and
collection does not run as root or SlurmUser), seeing none proves nothing: null with that
reason. Every command, its output and its exit code are kept.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from evalwatt.base import slurm
from evalwatt.contracts.accounting import AccountingFile, Exchange
from evalwatt.energy.cluster.collection import AccountingError, Collection, Transient
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts, JobTotalSource, Reading
from evalwatt.energy.sources import Unavailable

SOURCE: Final = "sacct"
FIELDS = (
    "JobIDRaw",
    "State",
    "Start",
    "End",
    "ElapsedRaw",
    "NodeList",
    "AllocCPUS",
    "AllocTRES",
    "ConsumedEnergyRaw",
)
NO_VAL64 = 2**63  # Slurm's "no value" sentinels of 64-bit fields sit at 2^64 - 2 and above
NO_PLUGIN = "acct_gather_energy/none"
CONFIG_KEYS = ("AcctGatherEnergyType", "AcctGatherNodeFreq", "PrivateData", "SlurmUser")
UNFINISHED = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING"}


def _run(argv: Sequence[str], settings: Settings, log: list[Exchange]) -> str:
    """Run one command through the Slurm client; kept in ``log`` with its output and exit
    code. A missing command is an AccountingError, no answer or a failure a Transient."""
    reply = slurm.run(argv, settings.timeout_s)
    log.append(Exchange(at_unix=reply.at_unix, request=reply.command, headers={},
                        status=reply.returncode, elapsed_s=reply.elapsed_s, body=reply.body,
                        error=reply.error))  # fmt: skip
    if reply.not_started is not None:
        raise AccountingError(f"{argv[0]}: not found ({reply.not_started})")
    if not reply.ok:
        raise Transient(f"{reply.command}: {reply.why(settings.timeout_s)}")
    return reply.stdout


def _scontrol(settings: Settings) -> str:
    return slurm.beside(settings.sacct_command, "scontrol")


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as key -> value."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_rows(text: str, fields: Sequence[str] = FIELDS) -> list[dict[str, str]]:
    """``sacct -n -P`` output as rows of the given fields."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            rows.append(dict(zip(fields, line.split("|"), strict=False)))
    return rows


def collect(run: Collection) -> None:
    """The site's energy plugin, the job's accounting row once it ended, and the other jobs
    on its node(s) while it ran."""
    job_id = run.slurm_job_id("the job ran outside Slurm: no job id to look up")
    settings, log, context = run.settings, run.log, run.context
    sacct = settings.sacct_command
    argv = [sacct, "-j", job_id, "-X", "-n", "-P", "--noconvert", "-o", ",".join(FIELDS)]

    def ended() -> dict[str, str]:
        rows = [r for r in parse_rows(_run(argv, settings, log)) if r.get("JobIDRaw") == job_id]
        if not rows:
            raise Transient(f"sacct has no job {job_id} yet")
        row = rows[0]
        state = row.get("State", "").split()[0] if row.get("State") else ""
        if state in UNFINISHED or row.get("End") in ("", "Unknown", "None"):
            raise Transient(f"job {job_id} is {state}: its energy is recorded when it ends")
        return row

    context["fields"] = list(FIELDS)
    try:
        try:
            shown = parse_config(_run([_scontrol(settings), "show", "config"], settings, log))
            context["config"] = {k: v for k, v in shown.items() if k in CONFIG_KEYS}
        except AccountingError as exc:
            context["config_error"] = str(exc)
        row, _ = run.wait_for(ended)
        others = [
            sacct, "-a", "-X", "-n", "-P", "-N", row["NodeList"], "-S", row["Start"],
            "-E", row["End"], "-o", "JobIDRaw,Start,End,NodeList,State",
        ]  # fmt: skip
        context["others_fields"] = ["JobIDRaw", "Start", "End", "NodeList", "State"]
        context["others_query"] = shlex.join(others)
        _run(others, settings, log)
    except AccountingError as exc:
        raise AccountingError(f"job {job_id}: {exc}") from None
    context["euid"] = os.geteuid()
    context["user"] = run.user


# --- reading ----------------------------------------------------------------------------------


def _when(text: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class SacctJob:
    """The job's sacct row, read from the kept output."""

    job_id: str
    nodes: str
    start: float | None
    end: float | None
    elapsed_s: float | None
    alloc_tres: str
    energy_j: float | None
    null_reason: str | None
    plugin: str | None
    notes: tuple[str, ...]
    exclusive: bool | None
    exclusive_detail: str

    @classmethod
    def of(cls, record: AccountingFile) -> SacctJob:
        if record.status != "ok":
            raise Unavailable(f"{SOURCE}: {record.detail}")
        job_id = str(record.scheduler_job_id)
        ctx = record.context
        outputs = [x for x in record.exchanges if "-j" in x.request.split()]
        row = next(
            r
            for x in reversed(outputs)
            for r in parse_rows(x.body or "", ctx["fields"])
            if r.get("JobIDRaw") == job_id
        )
        config = ctx.get("config", {})
        plugin = config.get("AcctGatherEnergyType")
        energy, why, notes = _energy(row.get("ConsumedEnergyRaw", ""), plugin, ctx)
        exclusive, detail = _exclusive(record, row, config)
        start, end = _when(row.get("Start", "")), _when(row.get("End", ""))
        elapsed = row.get("ElapsedRaw", "")
        return cls(
            job_id=job_id,
            nodes=row.get("NodeList", ""),
            start=start,
            end=end,
            elapsed_s=float(elapsed) if elapsed.isdigit() else None,
            alloc_tres=row.get("AllocTRES", ""),
            energy_j=energy,
            null_reason=why,
            plugin=plugin,
            notes=notes,
            exclusive=exclusive,
            exclusive_detail=detail,
        )


def _energy(
    raw: str, plugin: str | None, ctx: dict[str, Any]
) -> tuple[float | None, str | None, tuple[str, ...]]:
    notes: list[str] = []
    if plugin is None:
        notes.append(f"the energy plugin is unknown ({ctx.get('config_error', 'no scontrol')})")
    if plugin == NO_PLUGIN:
        return (
            None,
            (
                f"the site has no energy plugin (AcctGatherEnergyType = {NO_PLUGIN}): Slurm "
                f"records {raw or 'nothing'!s} for every job, which is not a measurement"
            ),
            tuple(notes),
        )
    if plugin == "acct_gather_energy/gpu":
        notes.append(
            "acct_gather_energy/gpu reads AMD GPUs only; on NVIDIA it reports nothing useful"
        )
    text = raw.strip()
    if not text:
        why = "ConsumedEnergyRaw is empty: Slurm recorded no energy for the job"
        return None, why, tuple(notes)
    if not text.isdigit():
        return None, f"ConsumedEnergyRaw is {text!r}, not a number of joules", tuple(notes)
    value = int(text)
    if value >= NO_VAL64:
        return None, f"ConsumedEnergyRaw is {value}: Slurm's 'no value'", tuple(notes)
    if value == 0:
        return (
            None,
            (
                "ConsumedEnergyRaw is 0: the plugin took no reading during the job (it samples "
                f"every {ctx.get('config', {}).get('AcctGatherNodeFreq', '?')}); not a zero energy"
            ),
            tuple(notes),
        )
    return float(value), None, tuple(notes)


def _exclusive(
    record: AccountingFile, row: dict[str, str], config: dict[str, str]
) -> tuple[bool | None, str]:
    query = record.context.get("others_query")
    replies = [x for x in record.exchanges if query and x.request == query]
    if not replies:
        return None, "the other jobs on the node were not listed"
    job_id = str(record.scheduler_job_id)
    fields = record.context["others_fields"]
    start, end = _when(row.get("Start", "")), _when(row.get("End", ""))
    others = []
    for r in parse_rows(replies[-1].body or "", fields):
        if r.get("JobIDRaw") == job_id:
            continue
        s, e = _when(r.get("Start", "")), _when(r.get("End", ""))
        if s is None or start is None or end is None:
            continue
        if s < end and (e is None or e > start):
            others.append(r.get("JobIDRaw", "?"))
    if others:
        return False, (
            f"not exclusive: job(s) {', '.join(others)} ran on {row.get('NodeList')} at the same "
            "time; the node's energy is theirs too"
        )
    hidden = "jobs" in config.get("PrivateData", "").lower()
    user = record.context.get("user")
    privileged = record.context.get("euid") == 0 or (
        user is not None and config.get("SlurmUser", "").startswith(f"{user}(")
    )
    if hidden and not privileged:
        return None, (
            "no other job of yours on the node, but PrivateData hides other users' jobs: "
            "exclusivity unknown"
        )
    return True, f"no other job on {row.get('NodeList')} while it ran"


@dataclass(frozen=True)
class SacctSource(JobTotalSource):
    """The node-level job total; no windows."""

    job_row: SacctJob
    name = SOURCE
    domain = "node"

    def total(self) -> tuple[float, float | None, float | None]:
        if self.job_row.energy_j is None:
            raise Unavailable(f"{SOURCE}: {self.job_row.null_reason}")
        return self.job_row.energy_j, self.job_row.start, self.job_row.end


def read(record: AccountingFile, settings: Settings, facts: JobFacts) -> Reading:
    """The job's sacct row in its raw file, as the node-level job-total source; whether the
    node ran other jobs meanwhile besides."""
    row = SacctJob.of(record)
    return Reading(
        source=SacctSource(row),
        span=(row.start, row.end) if row.start and row.end else None,
        reported_j=row.energy_j,
        reported_null_reason=row.null_reason,
        notes=row.notes,
        scope="node",
        exclusive=row.exclusive,
        exclusive_detail=row.exclusive_detail,
    )
