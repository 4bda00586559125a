"""What ships besides the chart: the image recipe, the kind cluster, make up/down, the workflows.

None of these can run here (no Docker, no cluster, no GitHub), so each is read
and checked for the properties the chart and the docs rely on.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from .conftest import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(path):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _base_images(path: Path) -> list[str]:
    args = dict(rest.split("=", 1) for word, rest in _instructions(path) if word == "ARG" and "=" in rest)
    images = []
    for word, rest in _instructions(path):
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image))
    return images


def test_the_image_is_built_in_two_stages_on_a_pinned_slim_python() -> None:
    stages = _stages(DOCKERFILE)
    assert len(stages) == 2
    for image in _base_images(DOCKERFILE):
        name, _, tag = image.partition(":")
        assert name == "python" and tag, image
        assert tag != "latest" and tag.startswith("3.11-slim"), image
    final = stages[-1]
    assert ("COPY", "--from=build /opt/mothership /opt/mothership") in final
    installs = [rest for word, rest in final if word == "RUN" and "pip install" in rest]
    assert not installs, "no pip in the final stage"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for word, rest in _stages(DOCKERFILE)[-1] if word == "USER"]
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == 65532, "numeric, so runAsNonRoot can verify it"
    assert gid == "" or gid.isdigit()


def test_the_entrypoint_is_mothership_for_operator_and_workers() -> None:
    final = _stages(DOCKERFILE)[-1]
    (entrypoint,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert yaml.safe_load(entrypoint) == ["mothership"]
    (cmd,) = [rest for word, rest in final if word == "CMD"]
    assert yaml.safe_load(cmd) == ["operator"]


def test_the_image_works_with_a_read_only_root_filesystem() -> None:
    """No bytecode writes, HOME and TMPDIR on /tmp (the pod's emptyDir)."""
    env: dict[str, str] = {}
    for word, rest in _stages(DOCKERFILE)[-1]:
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"
    assert env["PATH"].startswith("/opt/mothership/bin:")


def _pattern_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: ``**`` spans folders, ``*`` and ``?`` stay within one."""
    out = ""
    for token in re.split(r"(\*\*/?|\*|\?)", pattern):
        if token in ("**", "**/"):
            out += ".*" if token == "**" else "(.*/)?"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        else:
            out += re.escape(token)
    return out


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins, and a pattern matching a folder covers its files."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.removeprefix("!").strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_to_pyproject_readme_and_the_package() -> None:
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv/bin/python", ".git/HEAD", "tests/helm/test_chart.py", "helm/mothership/values.yaml",
                 "operator/mothership/__pycache__/cli.cpython-311.pyc", "bench/http_rps.py", ".env"):
        assert _ignored(patterns, path), f"{path} must not reach the build context"
    for path in ("pyproject.toml", "README.md", "operator/mothership/cli/__init__.py",
                 "operator/mothership/py.typed"):
        assert not _ignored(patterns, path), f"{path} is needed by the build"
    for explicit in (".venv", ".git", "tests"):
        assert explicit in patterns


def test_the_dockerfile_copies_only_what_dockerignore_lets_in() -> None:
    sources = [
        source
        for word, rest in _stages(DOCKERFILE)[0] if word == "COPY"
        for source in rest.split()[:-1]
    ]
    assert sorted(sources) == ["README.md", "operator", "pyproject.toml"]


# --- kind and make ----------------------------------------------------------


def test_kind_has_an_ingress_ready_control_plane_with_ports_80_and_443_and_two_workers() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    control_plane = config["nodes"][0]
    patches = [yaml.safe_load(p) for p in control_plane["kubeadmConfigPatches"]]
    assert patches[0]["kind"] == "InitConfiguration"
    assert patches[0]["nodeRegistration"]["kubeletExtraArgs"]["node-labels"] == "ingress-ready=true"
    ports = {(m["containerPort"], m["hostPort"], m["protocol"]) for m in control_plane["extraPortMappings"]}
    assert ports == {(80, 80, "TCP"), (443, 443, "TCP")}


def _make_targets() -> dict[str, list[str]]:
    targets: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([a-z][\w-]*):(?!=)\s*(.*)$", line)
        if match:
            current = match.group(1)
            targets[current] = match.group(2).split()
        elif line.startswith("\t") and current:
            targets[current].append(line.strip())
    return targets


def test_make_up_creates_builds_loads_installs_waits_and_applies_examples() -> None:
    targets = _make_targets()
    assert targets["up"][:5] == ["cluster", "image", "load", "install", "examples"]
    recipe = " ".join(" ".join(targets[t]) for t in ("cluster", "image", "load", "install", "examples"))
    for step in ("kind create cluster", "--config kind-config.yaml", "docker build", "kind load docker-image",
                 "helm upgrade --install", "--wait", "kubectl wait", "kubectl apply -f examples/"):
        assert step in recipe, step
    assert "kind delete cluster" in " ".join(targets["down"])


# --- workflows ----------------------------------------------------------------


def _workflow(name: str) -> dict[str, object]:
    data: dict[object, object] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data  # type: ignore[return-value]


def _steps(workflow: dict[str, object]) -> list[dict[str, str]]:
    jobs = workflow["jobs"]
    assert isinstance(jobs, dict)
    return [step for job in jobs.values() for step in job["steps"]]


def _runs(workflow: dict[str, object]) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow))


def _uses(workflow: dict[str, object]) -> list[str]:
    return [step["uses"] for step in _steps(workflow) if "uses" in step]


def test_ci_lints_and_runs_the_suite_on_push_and_pull_requests() -> None:
    ci = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])  # type: ignore[arg-type]
    runs = _runs(ci)
    for command in ("ruff check", "mypy", "lint-imports", "bash .ci/run", "apt-get install"):
        assert command in runs, command


def test_e2e_kind_installs_the_chart_runs_cluster_tests_and_gates_on_a_real_loadtest() -> None:
    e2e = _workflow("e2e-kind.yml")
    assert any(u.startswith("helm/kind-action@") for u in _uses(e2e))
    runs = _runs(e2e)
    order = ["docker build", "kind load docker-image", "helm install", "pytest -m cluster",
             "kind: LoadTest", "mothership loadtest wait"]
    positions = [runs.find(step) for step in order]
    assert -1 not in positions and positions == sorted(positions), dict(zip(order, positions, strict=True))
    (step,) = [s for s in _steps(e2e) if s.get("uses", "").startswith("helm/kind-action@")]
    assert step["with"]["config"] == "kind-config.yaml"  # type: ignore[index]


def test_release_pushes_the_image_and_the_chart_to_ghcr_on_tags() -> None:
    release = _workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v*.*.*"]}}
    assert release["permissions"] == {"contents": "read", "packages": "write"}
    uses = _uses(release)
    assert any(u.startswith("docker/build-push-action@") for u in uses)
    assert any(u.startswith("docker/login-action@") for u in uses)
    runs = _runs(release)
    assert "helm package helm/mothership" in runs and "helm push" in runs and "oci://ghcr.io/" in runs
    # The release rewrites exactly one line of values.yaml: the image repository.
    assert len(re.findall(r"(?m)^  repository: ", (CHART / "values.yaml").read_text())) == 1


def test_every_action_is_pinned_to_a_major_version() -> None:
    for name in ("ci.yml", "e2e-kind.yml", "release.yml"):
        for uses in _uses(_workflow(name)):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", uses), f"{name}: {uses}"
