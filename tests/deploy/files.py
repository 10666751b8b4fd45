"""Reading the deployment files: the repository's paths, the Dockerfile's instructions,
YAML, and the linters (which must be there: a missing one fails the test, never skips it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
LINTER_TIMEOUT_S = 120


def tool(name: str) -> str:
    """The linter's path: the project's .venv first (hadolint, actionlint and yamllint are dev
    dependencies), then PATH (ShellCheck is Debian's)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; scripts/ensure-linters.sh installs it")
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=LINTER_TIMEOUT_S, check=False
    )


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 for the first FROM's stage, 1 for the next, ...
    keyword: str
    arguments: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, re.sub(r"\s+", " ", arguments).strip()))
    return out


# An image reference pinned to one build: a digest, or a tag naming a full version
# (major.minor.patch, optionally with a suffix such as -slim-bookworm or -alpine).
_PINNED_TAG = re.compile(r"^v?\d+\.\d+\.\d+([-.][A-Za-z0-9.-]+)?$")
# PostgreSQL (since 10) numbers its releases major.minor: 16.9 is one exact release.
_PINNED_POSTGRES_TAG = re.compile(r"^\d+\.\d+([-.][A-Za-z0-9.-]+)?$")


def image_pinned(reference: str) -> bool:
    if re.search(r"@sha256:[0-9a-f]{64}$", reference):
        return True
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return False
    pattern = _PINNED_POSTGRES_TAG if name in ("postgres", "library/postgres") else _PINNED_TAG
    return bool(pattern.match(tag))
