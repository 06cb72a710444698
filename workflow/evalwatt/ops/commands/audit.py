"""``evalwatt audit``: rebuild the run's audit (evalwatt.report.audit) from its cell records,
and name the flagged jobs."""

from __future__ import annotations

import argparse

from evalwatt.base.errors import UserError
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import CellRecord
from evalwatt.ops.commands.common import Subparsers, add_configfile, layout_of, load
from evalwatt.report.audit import write_audit


def add(sub: Subparsers) -> None:
    p = sub.add_parser(
        "audit",
        help="job by job: every energy source, their gaps and flags (audit/audit.{parquet,md})",
    )
    add_configfile(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args, check_environment=False)
    layout = layout_of(config)
    paths = sorted((layout.root / "energy").glob("*.json"))
    if not paths:
        raise UserError(
            f"{layout.root / 'energy'}: no cell records; run the workflow's energy step first"
        )
    records = [read_contract(CellRecord, p) for p in paths]
    rows = write_audit(config, records, layout.audit("parquet"), layout.audit("md"))
    flagged = [r for r in rows if r["flagged"]]
    print(f"{layout.audit('parquet')}: {len(rows)} job(s), {len(flagged)} flagged")
    print(f"{layout.audit('md')}")
    for r in flagged:
        print(f"  {r['kind']} {r['job_id']}: " + "; ".join(r["flags"].splitlines()))
    return 0
