"""The GitHub Actions workflow: the checks the issue asks for are there, and pinned."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.files import WORKFLOW, image_pinned, load_yaml


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict[str, Any]]:
    workflow = load_yaml(WORKFLOW)
    assert workflow["permissions"] == {"contents": "read"}
    found = workflow["jobs"]
    assert isinstance(found, dict)
    return found


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _uses(jobs: dict[str, dict[str, Any]]) -> list[str]:
    return [step["uses"] for job in jobs.values() for step in job["steps"] if "uses" in step]


def _job_running(jobs: dict[str, dict[str, Any]], pattern: str) -> dict[str, Any]:
    matching = [job for job in jobs.values() if re.search(pattern, _runs(job), re.M)]
    assert matching, f"no job runs {pattern!r}"
    return matching[0]


def test_lint_and_types(jobs: dict[str, dict[str, Any]]) -> None:
    _job_running(jobs, r"ruff check \.")
    _job_running(jobs, r"ruff format --check \.")
    _job_running(jobs, r"\bmypy\b")


def test_every_job_builds_its_environment_with_the_bootstrap_script(
    jobs: dict[str, dict[str, Any]],
) -> None:
    for name, job in jobs.items():
        if name == "image":
            continue  # the Dockerfile runs it
        assert "bash scripts/bootstrap.sh" in _runs(job), name


def test_tests_run_against_service_containers(jobs: dict[str, dict[str, Any]]) -> None:
    job = _job_running(jobs, r"pytest tests\b(?!/deploy)")
    assert {"postgres", "redis", "rabbitmq"} <= set(job["services"])
    for service in job["services"].values():
        assert image_pinned(service["image"]), service["image"]
        assert "--health-cmd" in service["options"]


def test_migrations_upgrade_and_are_checked(jobs: dict[str, dict[str, Any]]) -> None:
    job = _job_running(jobs, r"alembic upgrade head")
    assert "postgres" in job["services"]
    runs = _runs(job)
    assert "alembic heads" in runs and "alembic current" in runs


def test_deploy_files_are_linted(jobs: dict[str, dict[str, Any]]) -> None:
    job = _job_running(jobs, r"pytest tests/deploy")
    assert "bash scripts/ensure-linters.sh" in _runs(job)


def test_image_is_built_audited_and_scanned(jobs: dict[str, dict[str, Any]]) -> None:
    job = _job_running(jobs, r"docker build -f deploy/Dockerfile")
    runs = _runs(job)
    assert re.search(r'"pip-audit==\d+\.\d+\.\d+"', runs)
    assert "pip-audit --strict" in runs
    scans = [s for s in job["steps"] if s.get("uses", "").startswith("aquasecurity/trivy-action@")]
    assert len(scans) == 1
    assert scans[0]["with"]["exit-code"] == "1"


def test_actions_are_pinned(jobs: dict[str, dict[str, Any]]) -> None:
    for uses in _uses(jobs):
        ref = uses.rpartition("@")[2]
        # A release tag (v5, 0.28.0) or a commit; never a branch.
        assert re.fullmatch(r"v?\d+(\.\d+)*|[0-9a-f]{40}", ref), uses
