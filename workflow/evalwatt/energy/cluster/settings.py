"""The config's ``accounting`` section as the cluster sources use it, and what of it a raw file
may keep.

Secrets: the credentials come from a file that others cannot read, or from an environment
variable of the login node, at the moment of the request (``evalwatt.energy.cluster.http``).
They are never written: a raw file keeps only where they come from (``secret_origin``). URLs
with credentials in them are refused by the config's schema.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from evalwatt.config.accounting import Ceems, Credentials, Prometheus
from evalwatt.config.load import Config


@dataclass(frozen=True)
class Settings:
    """The config's ``accounting`` section and the cutoff the padding aims at. Every field but
    the last three is the accounting section's field of the same name (``of`` copies them by
    name, so the two cannot drift apart)."""

    sources: tuple[str, ...]
    headline_order: tuple[str, ...]
    pue: float | None
    cluster_id: str | None
    gap_flag_pct: float
    ceems: Ceems
    prometheus: Prometheus
    credentials: Credentials
    tls_verify: bool
    ca_file: str | None
    timeout_s: float
    deadline_s: float
    backoff_initial_s: float
    backoff_max_s: float
    sacct_command: str
    """``accounting.sacct.command``."""
    cutoff_s: float
    """``cluster.accounting_window_s``: the shortest job the accounting keeps, padded past."""
    pad_margin_s: float

    @classmethod
    def of(cls, config: Config) -> Settings:
        """From a loaded config's typed ``accounting`` and ``cluster`` sections."""
        acc, cluster = config.accounting, config.cluster
        own = ("sacct_command", "cutoff_s", "pad_margin_s")
        same = {f.name: getattr(acc, f.name) for f in fields(cls) if f.name not in own}
        return cls(
            **same,
            sacct_command=acc.sacct.command,
            cutoff_s=cluster.accounting_window_s,
            pad_margin_s=cluster.pad_margin_s,
        )

    def padding_hint(self) -> str:
        return (
            f"the padding settings: cluster.accounting_window_s = {self.cutoff_s:g} s and "
            f"cluster.pad_margin_s = {self.pad_margin_s:g} s; set accounting_window_s to the "
            "site's cutoff_duration"
        )

    def public(self) -> dict[str, Any]:
        """What is kept in a raw file: everything but secrets (only where they come from)."""
        return {
            "cluster_id": self.cluster_id,
            "pue": self.pue,
            "ceems": self.ceems.model_dump(),
            "prometheus": self.prometheus.model_dump(),
            "sacct_command": self.sacct_command,
            "credentials_from": secret_origin(self.credentials),
            "tls_verify": self.tls_verify,
            "ca_file": self.ca_file,
            "timeout_s": self.timeout_s,
            "deadline_s": self.deadline_s,
            "backoff_initial_s": self.backoff_initial_s,
            "backoff_max_s": self.backoff_max_s,
            "cutoff_s": self.cutoff_s,
        }


def secret_origin(creds: Credentials) -> str | None:
    """Where the configured secret comes from, in words (what a raw file keeps of it)."""
    if creds.file:
        return f"{creds.scheme} credentials from file {creds.file}"
    if creds.env:
        return f"{creds.scheme} credentials from environment variable {creds.env}"
    return None
