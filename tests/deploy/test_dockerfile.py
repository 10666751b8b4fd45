"""deploy/Dockerfile: built by the README's own install script, pinned, non-root, checked."""

from __future__ import annotations

import re

from tests.deploy.files import DOCKERFILE, ROOT, Instruction, dockerfile_instructions, image_pinned

BOOTSTRAP = "scripts/bootstrap.sh"


def _instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def test_the_readme_installs_with_the_script_the_image_runs() -> None:
    # The README's quick start is quickstart.sh (and test.sh); both build the environment
    # with scripts/bootstrap.sh, which installs uv pinned from PyPI and syncs the lock.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "bash scripts/quickstart.sh" in readme
    for script in ("quickstart.sh", "test.sh"):
        text = (ROOT / "scripts" / script).read_text(encoding="utf-8")
        assert f"bash {BOOTSTRAP}" in text, script
    bootstrap = (ROOT / BOOTSTRAP).read_text(encoding="utf-8")
    assert re.search(r"^UV_VERSION=\d+\.\d+\.\d+$", bootstrap, re.M)
    assert '"uv==$UV_VERSION"' in bootstrap
    assert re.search(r"^uv sync --frozen\b", bootstrap, re.M)


def test_every_install_step_is_the_bootstrap_script() -> None:
    runs = [i for i in _instructions() if i.keyword == "RUN"]
    installs = [r for r in runs if re.search(r"\b(pip|uv)\b|bootstrap", r.arguments)]
    assert len(installs) == 2, installs  # the locked dependencies, then the project
    for step in installs:
        assert f"bash {BOOTSTRAP}" in step.arguments, step
        # Narrowed to the runtime dependencies: no dev tools, no loopback MongoDB.
        assert "BOOTSTRAP_SYNC_ARGS=" in step.arguments
        assert "--no-default-groups" in step.arguments
    # The script is copied in, not rewritten inline.
    copies = [i.arguments for i in _instructions() if i.keyword == "COPY"]
    assert f"{BOOTSTRAP} {BOOTSTRAP}" in copies


def test_base_images_are_pinned() -> None:
    froms = [i.arguments.split()[0] for i in _instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2  # multi-stage
    for image in froms:
        assert image_pinned(image), image


def test_the_final_stage_has_only_the_runtime() -> None:
    instructions = _instructions()
    final = _final_stage(instructions)
    # Nothing is installed in it: the virtual environment comes built from the first stage.
    assert not [i for i in final if i.keyword == "RUN" and re.search(r"pip|uv |apt", i.arguments)]
    copies = [i.arguments for i in final if i.keyword == "COPY"]
    assert [c for c in copies if "--from=" in c] == ["--from=build /app/.venv /app/.venv"]
    plain = [c for c in copies if "--from=" not in c]
    assert all(not a.startswith(("src", ".", "tests", "scripts")) for a in plain), plain


def test_the_process_runs_as_a_numeric_non_root_user() -> None:
    final = _final_stage(_instructions())
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    # And USER comes after every RUN (a later RUN would run as that user anyway, but an
    # instruction after USER switching back to root would not be caught otherwise).
    keywords = [i.keyword for i in final]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_healthcheck_hits_healthz() -> None:
    final = _final_stage(_instructions())
    checks = [i.arguments for i in final if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0]
    assert "CMD" in checks[0]
    assert re.search(r"--timeout=\d+s", checks[0])


def test_the_context_sends_no_secret_or_local_state() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    lines = [line.strip() for line in ignore.splitlines() if line.strip()]
    assert lines[lines.index("*")] == "*"  # everything excluded, then what the build copies
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert not {a for a in allowed if "secret" in a or a.startswith((".venv", "var", "deploy"))}


def test_the_pinning_rule_refuses_moving_tags() -> None:
    from tests.deploy.files import image_pinned

    assert image_pinned("python:3.11.14-slim-bookworm")
    assert image_pinned("postgres:16.9-bookworm")
    assert image_pinned("traefik:v3.3.5")
    assert image_pinned("redis@sha256:" + "a" * 64)
    for moving in ("python:3.11-slim", "redis:7", "redis:7.4", "traefik:latest", "mongo"):
        assert not image_pinned(moving), moving
