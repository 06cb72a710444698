"""``python -m evalwatt.config``: regenerate what comes from the config's models.

Writes workflow/schemas/config.schema.yaml and model.schema.yaml, and the reference at the end
of docs/config.md; run it after changing a model of ``evalwatt.config`` (tests fail until the
committed files match).
"""

from pathlib import Path

from evalwatt.base.atomic import write_text
from evalwatt.base.paths import REPO_DIR
from evalwatt.config.docs import with_reference
from evalwatt.config.generate import write_schemas

DOCS_PAGE = REPO_DIR / "docs" / "config.md"


def main(page: Path = DOCS_PAGE) -> None:
    for path in write_schemas():
        print(f"wrote {path}")
    write_text(page, with_reference(page.read_text(encoding="utf-8")))
    print(f"wrote {page}")


main()
