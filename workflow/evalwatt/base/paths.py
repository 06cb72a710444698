"""Where the workflow's own resources live (schemas, templates), found from this package.

The package is installed in editable mode from ``workflow/``, so its resources sit beside it.
"""

from __future__ import annotations

from pathlib import Path

WORKFLOW_DIR = Path(__file__).resolve().parents[2]
REPO_DIR = WORKFLOW_DIR.parent
SCHEMA_DIR = WORKFLOW_DIR / "schemas"
TEMPLATE_DIR = WORKFLOW_DIR / "templates"
DEFAULT_CONFIG = REPO_DIR / "config" / "config.yaml"
"""The embedded default: the CPU demo."""
