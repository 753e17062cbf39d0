"""The deployment stays locked down: deploy/k8s, docker-compose.yml, the Dockerfile and
constraints.txt read as files, nothing started.

Whoever reaches Redis can read every job, forge results and enqueue work billed to the API
token, so these pin what keeps it closed: a password from a Secret, the URL that carries it never
in a ConfigMap, a NetworkPolicy that admits only our pods, resource limits everywhere, exact
image versions and exact dependency versions.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from faceswap_jobs.config import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
CONSTRAINTS = ROOT / "constraints.txt"
SECRET = "faceswap-secrets"
REDIS_CLIENT_LABEL = "faceswap-jobs/redis-client"
EXACT_TAG = re.compile(r"^\d+\.\d+\.\d+([-.][A-Za-z0-9.-]+)?$")
"""A full X.Y.Z release, optionally with a variant (3.11.14-slim-bookworm): not `7`, `3.11-slim`."""
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def manifests() -> list[dict[str, Any]]:
    kustomization = K8S / "kustomization.yaml"
    return [
        document
        for path in sorted(K8S.glob("*.yaml"))
        if path != kustomization
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def workloads() -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] in {"Deployment", "StatefulSet", "Job"}]


def workload(name: str) -> dict[str, Any]:
    [found] = [doc for doc in workloads() if doc["metadata"]["name"] == name]
    return found


def pod_labels(name: str) -> dict[str, str]:
    return workload(name)["spec"]["template"]["metadata"]["labels"]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc["spec"]["template"]["spec"]
    return pod["containers"] + pod.get("initContainers", [])


def all_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in workloads():
        for container in containers(doc):
            yield f"{doc['metadata']['name']}/{container['name']}", container


def network_policies() -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == "NetworkPolicy"]


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    assert "matchExpressions" not in selector, "only matchLabels is checked here"
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """docker compose's ${...} substitution: `:?` refuses an unset or empty variable."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = env.get(name, "")
        if operator == ":?" and not value:
            raise ValueError(f"{name}: {argument}")
        if operator == ":-" and not value:
            return argument
        return value

    return COMPOSE_VARIABLE.sub(substitute, text)


COMPOSE_ENV = {"FACESWAP_REDIS_PASSWORD": "compose-redis-pw", "FACESWAP_FLOWER_PASSWORD": "fp"}


def compose(env: Mapping[str, str] = COMPOSE_ENV) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


def is_pinned(image: str) -> bool:
    """`name:X.Y.Z[-variant]`, optionally with `@sha256:...` after it."""
    reference = image.split("@", 1)[0]
    name, _, tag = reference.rpartition(":")
    return bool(name) and "/" not in tag and EXACT_TAG.match(tag) is not None


# --- kubernetes ------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization()["resources"]) == files


def test_every_container_has_requests_and_limits() -> None:
    for where, container in all_containers():
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind}"


def test_every_image_is_an_exact_version() -> None:
    overrides = {image["name"]: image for image in kustomization()["images"]}
    images = []
    for where, container in all_containers():
        image = container["image"]
        if image in overrides:
            override = overrides[image]
            image = f"{override.get('newName', image)}:{override['newTag']}"
        images.append((where, image))
    assert images
    for where, image in images:
        assert is_pinned(image), f"{where}: {image}"


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("redis:7.2.11", True),
        ("python:3.11.14-slim-bookworm", True),
        ("registry.example.com:5000/faceswap-jobs:0.1.0", True),
        ("redis:7.2.11@sha256:" + "0" * 64, True),
        ("redis", False),
        ("redis:latest", False),
        ("redis:7", False),
        ("redis:7.2", False),
        ("python:3.11-slim", False),
        ("registry.example.com:5000/faceswap-jobs", False),
    ],
)
def test_is_pinned(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


def test_redis_url_comes_from_the_secret_only() -> None:
    for doc in manifests():
        if doc["kind"] == "ConfigMap":
            assert "FACESWAP_REDIS_URL" not in doc["data"], doc["metadata"]["name"]
    readers = set()
    for where, container in all_containers():
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, f"{where}: name each secret key it needs"
        for variable in container.get("env", []):
            if variable["name"] == "FACESWAP_REDIS_URL":
                assert "value" not in variable, where
                reference = variable["valueFrom"]["secretKeyRef"]
                assert (reference["name"], reference["key"]) == (SECRET, "redis-url"), where
                readers.add(where)
    assert readers == {"worker/worker", "flower/flower"}


def secret_data() -> dict[str, str]:
    [secret] = [doc for doc in manifests() if doc["kind"] == "Secret"]
    assert secret["metadata"]["name"] == SECRET
    return secret["stringData"]


def test_secret_ships_placeholders_and_a_url_with_its_password() -> None:
    data = secret_data()
    assert {"api-token", "flower-password", "redis-password", "redis-url"} <= set(data)
    for key, value in data.items():
        assert "replace-with" in value, f"{key} must be a placeholder, never a real value"
    assert urlsplit(data["redis-url"]).password == data["redis-password"]


def test_redis_requires_the_password_from_the_secret() -> None:
    [redis] = containers(workload("redis"))
    args = redis["args"]
    password_arg = args[args.index("--requirepass") + 1]
    variable = re.fullmatch(r"\$\((\w+)\)", password_arg)
    assert variable, "the password is passed by reference, never written in the manifest"
    [env] = [item for item in redis["env"] if item["name"] == variable.group(1)]
    assert env["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "redis-password"}
    # redis-cli in the probes reads REDISCLI_AUTH: the probes need the password too.
    assert variable.group(1) == "REDISCLI_AUTH"


def redis_policies() -> list[dict[str, Any]]:
    labels = pod_labels("redis")
    return [p for p in network_policies() if selects(p["spec"]["podSelector"], labels)]


def test_everything_starts_denied() -> None:
    deny = [
        p["spec"]
        for p in network_policies()
        if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
    ]
    assert any({"Ingress", "Egress"} <= set(spec["policyTypes"]) for spec in deny)
    for p in network_policies():
        assert not any(rule == {} for rule in p["spec"].get("ingress", [])), "allow-all rule"


def test_only_our_pods_reach_redis_and_only_on_6379() -> None:
    policies = [p for p in redis_policies() if p["spec"].get("ingress")]
    assert policies, "no NetworkPolicy admits anything to Redis"
    admitted_selectors = []
    for policy in policies:
        for rule in policy["spec"]["ingress"]:
            assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, "no other namespace, no address block"
                admitted_selectors.append(peer["podSelector"])

    def admitted(name: str) -> bool:
        return any(selects(selector, pod_labels(name)) for selector in admitted_selectors)

    assert admitted("worker")
    assert admitted("flower")
    assert not admitted("emulator")
    assert not admitted("redis")
    assert all(selector["matchLabels"] for selector in admitted_selectors)


def test_only_flowers_port_is_open_beyond_the_namespace() -> None:
    outside = set()
    for policy in network_policies():
        for rule in policy["spec"].get("ingress", []):
            if any(set(peer) != {"podSelector"} for peer in rule["from"]):
                ports = {port["port"] for port in rule["ports"]}
                outside.add((policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
                             frozenset(ports)))  # fmt: skip
    assert outside == {("flower", frozenset({5555}))}


def test_workers_reach_only_redis_dns_and_the_api() -> None:
    labels = pod_labels("worker")
    ports = set()
    for policy in network_policies():
        if selects(policy["spec"]["podSelector"], labels):
            for rule in policy["spec"].get("egress", []):
                assert rule.get("ports"), f"{policy['metadata']['name']}: an egress to any port"
                ports |= {port["port"] for port in rule["ports"]}
    # Redis, DNS, the API over HTTPS, and the staging emulator.
    assert ports == {6379, 53, 443, 8700}


# --- docker compose --------------------------------------------------------------------------


def test_compose_refuses_to_start_without_a_redis_password() -> None:
    env = {key: value for key, value in COMPOSE_ENV.items() if key != "FACESWAP_REDIS_PASSWORD"}
    with pytest.raises(ValueError, match="FACESWAP_REDIS_PASSWORD"):
        compose(env)


def test_compose_redis_asks_for_the_password_the_others_use() -> None:
    services = compose()["services"]
    redis = services["redis"]
    assert redis["environment"]["REDISCLI_AUTH"] == COMPOSE_ENV["FACESWAP_REDIS_PASSWORD"]
    assert '--requirepass "$REDISCLI_AUTH"' in redis["command"][-1]
    for name in ("worker", "flower"):
        url = urlsplit(services[name]["environment"]["FACESWAP_REDIS_URL"])
        assert (url.password, url.hostname) == (COMPOSE_ENV["FACESWAP_REDIS_PASSWORD"], "redis")


def test_compose_redis_is_reachable_from_worker_and_flower_only() -> None:
    document = compose()
    services = document["services"]
    assert "ports" not in services["redis"]
    [network] = services["redis"]["networks"]
    assert document["networks"][network]["internal"] is True
    on_it = {name for name, service in services.items() if network in service.get("networks", [])}
    assert on_it == {"redis", "worker", "flower"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert name == "flower" and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_compose_services_have_reservations_and_limits() -> None:
    for name, service in compose()["services"].items():
        resources = service["deploy"]["resources"]
        for kind in ("reservations", "limits"):
            assert {"cpus", "memory"} <= set(resources[kind]), f"{name}: {kind}"


def test_compose_images_are_exact_versions() -> None:
    for name, service in compose()["services"].items():
        if "build" in service:
            continue  # built from the Dockerfile, whose base image is checked below
        assert is_pinned(service["image"]), f"{name}: {service['image']}"


# --- image and dependencies ------------------------------------------------------------------


def dockerfile_instructions() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_base_is_an_exact_version() -> None:
    images = [line.split()[1] for line in dockerfile_instructions() if line.startswith("FROM ")]
    assert images
    assert all(is_pinned(image) for image in images), images


def test_dockerfile_installs_with_the_constraints() -> None:
    instructions = dockerfile_instructions()
    copied = [
        line for line in instructions if line.startswith("COPY ") and "constraints.txt" in line
    ]
    assert copied
    installs = [line for line in instructions if "pip install" in line]
    assert installs
    for line in installs:
        assert re.search(r"(--constraint|-c)[ =]\S*constraints\.txt", line), line
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "constraints.txt" not in ignored


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"not an exact pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in found, f"{name} pinned twice"
        found[name] = match.group(2)
    return found


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert canonicalize_name(project["name"]) not in pinned
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} is outside {requirement.specifier}"
        )


def test_constraints_say_how_to_regenerate_them() -> None:
    header = "\n".join(
        line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("#")
    )
    assert "deploy/freeze_constraints.py > constraints.txt" in header
    assert (ROOT / "deploy" / "freeze_constraints.py").is_file()


STRONG = {"FACESWAP_FLOWER_PASSWORD": "7hN2-qvX9-Lr4w-Tz8k"}


@pytest.mark.parametrize("service", ["worker", "flower"])
def test_compose_settings_are_accepted(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What compose gives a service must pass `Settings`' checks (plain http to the emulator on
    compose's private network is allowed explicitly), or the service would not start."""
    env = compose(COMPOSE_ENV | STRONG)["services"][service]["environment"]
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))

    settings = Settings(_env_file=None)

    assert settings.redis_url.startswith("redis://")


def test_the_configmap_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    [config] = [doc for doc in manifests() if doc["kind"] == "ConfigMap"]
    for name, value in config["data"].items():
        monkeypatch.setenv(name, str(value))

    settings = Settings(_env_file=None)

    assert settings.api_base_url == config["data"]["FACESWAP_API_BASE_URL"]
