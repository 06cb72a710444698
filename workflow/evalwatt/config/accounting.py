"""The config's ``accounting`` section: the cluster's own energy accounting, collected on the
login node after each job beside the in-job NVML counter (docs/energy-sources.md), and the audit
that sets the sources side by side (docs/audit.md).

Secrets are never written in the config: only the name of a credentials file or of an
environment variable.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from evalwatt.config.section import (
    HttpUrl,
    Identifier,
    Matching,
    Printable,
    Section,
    Unique,
    section,
)

ClusterSource = Literal["ceems-api", "prometheus", "sacct"]
HeadlineSource = Literal["nvml", "ceems-api", "prometheus"]
HeaderName = Annotated[str, Matching(r"^[A-Za-z0-9-]{1,64}$")]
UserName = Annotated[str, Matching(r"^[A-Za-z0-9._@-]{1,64}$")]
Command = Annotated[str, Matching(r"^[^\s]+$")]
ClusterId = Annotated[str, Matching(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class Ceems(Section):
    """The CEEMS API server (ceems_api_server)."""

    url: HttpUrl | None = None
    """Base URL of the API server, e.g. https://ceems.example.org (no credentials in it)."""
    admin: bool = False
    """Query /api/v1/units/admin (CEEMS admins) instead of /api/v1/units."""
    user_header: HeaderName = "X-Grafana-User"
    """Header that carries the user name (the server's setting; CEEMS's default)."""
    user: UserName | None = None
    """User name sent in user_header; null means the login name of who runs the workflow."""
    time_unit: Literal["s", "ms"] = "s"
    """Unit of the `from`/`to` query parameters: s (what CEEMS v0.10.2's code parses) or ms (what
    its API description says)."""


class Prometheus(Section):
    """The Prometheus (or Thanos, VictoriaMetrics) that holds the site's power series."""

    url: HttpUrl | None = None
    """Base URL, e.g. https://prometheus.example.org (no credentials in it)."""
    series: Literal["ceems", "dcgm-power", "dcgm-energy"] = "ceems"
    """ceems: uuid:ceems_gpu_power_watts:pue of the job (W, PUE included); dcgm-power:
    DCGM_FI_DEV_POWER_USAGE of the job's GPUs (W); dcgm-energy:
    DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION of the job's GPUs (mJ counter)."""
    host_label: Identifier = "Hostname"
    """Label of DCGM series that names the node."""
    gpu_label: Identifier = "UUID"
    """Label of DCGM series that names the GPU (UUID, matched to the sampler's GPU UUIDs)."""
    margin_s: float = Field(120, ge=0, le=3600)
    """Seconds queried before job_start and after job_end."""


class Sacct(Section):
    """Slurm's accounting (sacct ConsumedEnergyRaw, node level)."""

    command: Command = "sacct"
    """The sacct command (a path or a name on PATH)."""


class Credentials(Section):
    """Where the HTTP sources' secret comes from (never the secret itself)."""

    file: Printable | None = None
    """File holding user:password (basic) or a token (bearer), one line."""
    env: Identifier | None = None
    """Name of the environment variable holding them."""
    scheme: Literal["basic", "bearer"] = "basic"
    """How they are sent (Authorization header)."""


class Accounting(Section):
    """The cluster's energy accounting sources, how to reach them, and the audit's threshold."""

    sources: Unique[ClusterSource] = ()
    """Cluster sources collected after each job: ceems-api (the CEEMS API server's units),
    prometheus (per-job CEEMS or DCGM series), sacct (Slurm's ConsumedEnergyRaw). Empty: none,
    and no network is used."""
    headline_order: Unique[HeadlineSource] = Field(("nvml",), min_length=1)
    """Sources of the table's gpu_* columns, in order of preference: the first one that has a
    figure for the cell's job is used (and named in gpu_energy_source). nvml is the in-job
    counter; the others must be in `sources`. sacct is node-level, never a GPU headline."""
    pue: float | None = Field(None, ge=1, le=3)
    """The power usage effectiveness that the site's CEEMS multiplies into its per-job power series
    and kWh (its recording rules' PUE factor). Known: evalwatt derives PUE-free figures. null:
    unknown; CEEMS figures are then kept as reported and never used as the GPU headline."""
    cluster_id: ClusterId | None = None
    """CEEMS's id of this cluster (the `cluster_id` of its units)."""
    gap_flag_pct: float = Field(10, ge=0, le=1000)
    """The audit flags a job where a source differs from the reference (the in-job NVML counter) by
    more than this many percent."""
    ceems: Ceems = section(Ceems)
    """The CEEMS API server (ceems_api_server)."""
    prometheus: Prometheus = section(Prometheus)
    """The Prometheus (or Thanos, VictoriaMetrics) that holds the site's power series."""
    sacct: Sacct = section(Sacct)
    """Slurm's accounting (sacct ConsumedEnergyRaw, node level)."""
    credentials: Credentials = section(Credentials)
    """Credentials of the HTTP sources, from a file (mode 0600 or 0640: a file others can read is
    refused) or an environment variable of the login node; never from the config, never written
    to a script, a log or a result."""
    tls_verify: bool = True
    """Verify the servers' TLS certificates (never turn off outside a test)."""
    ca_file: Printable | None = None
    """CA bundle to verify them with; null means the system's."""
    timeout_s: float = Field(30, gt=0, le=600)
    """Timeout of one HTTP request or one sacct call, seconds."""
    deadline_s: float = Field(2700, ge=0, le=86400)
    """How long collection waits for a job to appear (CEEMS updates units every update_interval,
    default 15 min) before reporting it missing."""
    backoff_initial_s: float = Field(30, gt=0, le=3600)
    """First wait between two tries; it doubles up to backoff_max_s."""
    backoff_max_s: float = Field(300, gt=0, le=3600)
    """Longest wait between two tries."""
