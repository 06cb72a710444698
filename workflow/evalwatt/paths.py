"""Where the workflow's own resources live (schemas, templates), found from this package.

The package is installed in editable mode from ``workflow/``, so its resources sit beside it.
"""

from __future__ import annotations

from pathlib import Path

WORKFLOW_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = WORKFLOW_DIR.parent
SCHEMA_DIR = WORKFLOW_DIR / "schemas"
TEMPLATE_DIR = WORKFLOW_DIR / "templates"
