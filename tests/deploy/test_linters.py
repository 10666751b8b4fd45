"""The linters, on the real files, and each once on a broken file to show it is awake: a
linter that passes everything would make the first kind of test worthless."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.deploy.files import DOCKERFILE, ROOT, WORKFLOW, run, tool


def _report(result: object) -> str:
    return f"{getattr(result, 'stdout', '')}{getattr(result, 'stderr', '')}"


def test_hadolint_passes_the_dockerfile() -> None:
    # The default failure threshold is `info`: any finding at all fails.
    result = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, _report(result)


def test_hadolint_catches_an_unpinned_root_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\n")
    result = run(tool("hadolint"), "--no-color", str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag
    assert "DL3013" in result.stdout  # pip without a pinned version


def test_actionlint_passes_the_workflow_with_shellcheck() -> None:
    # ShellCheck is required, not optional: without it actionlint skips the `run:` scripts.
    shellcheck = tool("shellcheck")
    result = run(tool("actionlint"), "-no-color", "-shellcheck", shellcheck, str(WORKFLOW))
    assert result.returncode == 0, _report(result)


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    bad = workflows / "bad.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
        "      - run: echo $UNQUOTED_VAR\n"
        "        if: ${{ matrix.nope }}\n"
    )
    shellcheck = tool("shellcheck")
    result = run(tool("actionlint"), "-no-color", "-shellcheck", shellcheck, str(bad), cwd=tmp_path)
    assert result.returncode != 0
    assert "untrusted" in result.stdout  # script injection from a pull request's title
    assert "SC2086" in result.stdout  # ShellCheck ran on the `run:` script
    assert "matrix" in result.stdout  # a context that does not exist here


def test_yamllint_passes_deploy_and_github() -> None:
    targets = [str(p) for p in (ROOT / "deploy", ROOT / ".github") if p.exists()]
    result = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), *targets)
    assert result.returncode == 0, _report(result)
    # It looked at YAML under both: an empty directory would pass as well.
    listed = run(tool("yamllint"), "--list-files", "-c", str(ROOT / ".yamllint.yaml"), *targets)
    files = listed.stdout.split()
    assert any("/deploy/compose.yaml" in f or f.endswith("deploy/compose.yaml") for f in files)
    assert any(f.endswith(".github/workflows/ci.yml") for f in files)


def test_yamllint_catches_a_duplicate_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  api:\n    image: a:1.0.0\n  api:\n    image: b:1.0.0\n")
    result = run(tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(bad))
    assert result.returncode != 0
    assert "key-duplicates" in result.stdout


def test_shellcheck_passes_the_scripts_the_image_and_ci_run(tmp_path: Path) -> None:
    scripts = [ROOT / "scripts" / "bootstrap.sh", ROOT / "scripts" / "ensure-linters.sh"]
    result = run(tool("shellcheck"), *map(str, scripts))
    assert result.returncode == 0, _report(result)
    broken = tmp_path / "broken.sh"
    shutil.copy(scripts[0], broken)
    broken.write_text(broken.read_text() + "rm -rf $UNSET_DIR/*\n")
    assert run(tool("shellcheck"), str(broken)).returncode != 0
