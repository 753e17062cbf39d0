"""The deployment stays locked down and whole: deploy/k8s, docker-compose.yml, the Dockerfile
and constraints.txt read as files, nothing started.

Whoever reaches Redis can read every job, forge results and enqueue work billed to the API
token, so these pin what keeps it closed: a password from a Secret, the URL that carries it never
in a ConfigMap, a NetworkPolicy that admits only our pods, resource limits everywhere, exact
image versions and exact dependency versions. And every process runs somewhere, supervised:
worker, Flower, the receiver and the exporter have probes (the CLI's own `check` commands, which
must parse), disruption budgets, and manifests that Kubernetes' schemas accept
(kubernetes-validate bundles them: checked offline).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import typer
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import ValidationError

from faceswap_jobs.config import Settings
from faceswap_jobs.ops.cli import app as cli_app

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
CONSTRAINTS = ROOT / "constraints.txt"
SECRET = "faceswap-secrets"
REDIS_CLIENT_LABEL = "faceswap-jobs/redis-client"
EXACT_TAG = re.compile(r"^\d+\.\d+\.\d+([-.][A-Za-z0-9.-]+)?$")
"""A full X.Y.Z release, optionally with a variant (3.11.14-slim-bookworm): not `7`, `3.11-slim`."""
COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
EXAMPLES = {"keda-scaledobject.yaml"}
"""Manifests shipped beside the kustomization but not in it (they need CRDs of their own)."""
CUSTOM_GROUPS = {"keda.sh"}
"""API groups whose kinds have no schema in kubernetes-validate: checked by structure instead."""
OLDEST_KUBERNETES = "1.29.0"
SECRET_STRONG = "kR3v9TqL2xWm8ZpN4bYc7HdJ6fGs1AeQ0uVi5oXt"


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def documents(name: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all((K8S / name).read_text()) if document]


def manifests() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s` applies."""
    return [document for name in kustomization()["resources"] for document in documents(name)]


def example_documents() -> list[dict[str, Any]]:
    return [document for name in sorted(EXAMPLES) for document in documents(name)]


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


def test_kustomization_lists_every_manifest_but_the_examples() -> None:
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert files >= EXAMPLES
    assert set(kustomization()["resources"]) == files - EXAMPLES


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
    assert readers == {"worker/worker", "flower/flower", "webhook/webhook", "metrics/metrics"}


def secret_data() -> dict[str, str]:
    [secret] = [doc for doc in manifests() if doc["kind"] == "Secret"]
    assert secret["metadata"]["name"] == SECRET
    return secret["stringData"]


def test_secret_ships_placeholders_and_a_url_with_its_password() -> None:
    data = secret_data()
    expected = {"api-token", "flower-password", "redis-password", "redis-url", "webhook-secret"}
    assert expected <= set(data)
    for key, value in data.items():
        assert "replace-with" in value, f"{key} must be a placeholder, never a real value"
    assert urlsplit(data["redis-url"]).password == data["redis-password"]


def test_the_webhook_secret_placeholder_is_refused_until_replaced() -> None:
    with pytest.raises(ValidationError, match="webhook_secret: too short"):
        Settings(_env_file=None, webhook_secret=secret_data()["webhook-secret"])


def secret_readers(key: str) -> set[str]:
    return {
        where
        for where, container in all_containers()
        for variable in container.get("env", [])
        if variable.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == key
    }


def test_callback_mode_is_off_and_only_the_receiver_reads_the_webhook_secret() -> None:
    """Workers given the placeholder would refuse to start: callback mode is turned on by hand
    (worker.yaml says how), once the secret is real."""
    for doc in manifests():
        if doc["kind"] == "ConfigMap":
            assert "FACESWAP_CALLBACK_BASE_URL" not in doc["data"]
    for where, container in all_containers():
        names = {variable["name"] for variable in container.get("env", [])}
        assert "FACESWAP_CALLBACK_BASE_URL" not in names, where
    assert secret_readers("webhook-secret") == {"webhook/webhook"}


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

    for name in ("worker", "flower", "webhook", "metrics"):
        assert admitted(name), name
    assert not admitted("emulator")
    assert not admitted("redis")
    assert all(selector["matchLabels"] for selector in admitted_selectors)


def ingress_rules(name: str) -> list[dict[str, Any]]:
    labels = pod_labels(name)
    return [
        rule
        for policy in network_policies()
        if selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
    ]


def test_only_flower_receiver_and_exporter_ports_are_open_beyond_the_namespace() -> None:
    outside = set()
    for policy in network_policies():
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from") and rule.get("ports"), policy["metadata"]["name"]
            if any(set(peer) != {"podSelector"} for peer in rule["from"]):
                ports = {port["port"] for port in rule["ports"]}
                outside.add((policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
                             frozenset(ports)))  # fmt: skip
    assert outside == {
        ("flower", frozenset({5555})),
        ("webhook", frozenset({8800})),
        ("metrics", frozenset({9808})),
    }


def test_the_receiver_is_reachable_from_anywhere_on_its_port_only() -> None:
    """The API calls back from the internet (through an Ingress): every source, one port."""
    [rule] = ingress_rules("webhook")
    assert rule["ports"] == [{"protocol": "TCP", "port": 8800}]
    cidrs = {peer["ipBlock"]["cidr"] for peer in rule["from"] if "ipBlock" in peer}
    assert cidrs == {"0.0.0.0/0", "::/0"}
    assert {"namespaceSelector": {}} in rule["from"]


def test_the_exporter_is_reachable_from_the_monitoring_namespace_only() -> None:
    [rule] = ingress_rules("metrics")
    assert rule["ports"] == [{"protocol": "TCP", "port": 9808}]
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert rule["from"] == [{"namespaceSelector": monitoring}]


def egress_ports(name: str) -> set[int]:
    labels = pod_labels(name)
    ports = set()
    for policy in network_policies():
        if selects(policy["spec"]["podSelector"], labels):
            for rule in policy["spec"].get("egress", []):
                assert rule.get("ports"), f"{policy['metadata']['name']}: an egress to any port"
                ports |= {port["port"] for port in rule["ports"]}
    return ports


def test_workers_reach_only_redis_dns_and_the_api() -> None:
    # Redis, DNS, the API over HTTPS, and the staging emulator.
    assert egress_ports("worker") == {6379, 53, 443, 8700}


@pytest.mark.parametrize("name", ["webhook", "metrics", "flower"])
def test_receiver_exporter_and_flower_reach_only_redis_and_dns(name: str) -> None:
    assert egress_ports(name) == {6379, 53}


# --- probes, disruption budgets, schemas -----------------------------------------------------


def parse_cli(argv: list[str]) -> Any:
    """The context of `faceswap-jobs ARGV` parsed down to its command, options and values
    checked, nothing run (typer's own click raises its usage errors)."""
    command: Any = typer.main.get_command(cli_app)
    name, rest, context = "faceswap-jobs", list(argv), None
    while True:
        context = command.make_context(name, rest, parent=context)
        if not hasattr(command, "get_command"):
            return context
        name, rest = rest[0], rest[1:]
        command = command.get_command(context, name)
        if command is None:
            raise LookupError(f"No such command {name!r}")


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {kind: container[kind] for kind in kinds if kind in container}


def test_every_container_has_readiness_and_liveness_probes() -> None:
    for where, container in all_containers():
        assert {"readinessProbe", "livenessProbe"} <= set(probes(container)), where


def test_our_containers_run_commands_the_cli_accepts() -> None:
    """Arguments and exec probes that name a command or option the CLI lacks would only fail
    in the cluster, as a crash loop or a probe that never passes."""
    checked = 0
    for _, container in all_containers():
        if container["image"] == "faceswap-jobs":
            parse_cli(container["args"])
            checked += 1
        for probe in probes(container).values():
            command = probe.get("exec", {}).get("command", [])
            if command[:1] == ["faceswap-jobs"]:
                parse_cli(command[1:])
                checked += 1
    assert checked >= 5 + 3


def test_parse_cli_refuses_what_the_cli_refuses() -> None:
    assert parse_cli(["check", "worker", "--timeout", "5"]).params["timeout"] == 5.0
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        parse_cli(["check", "worker", "--no-such-option"])
    with pytest.raises(Exception, match="valid number"):
        parse_cli(["check", "redis", "--timeout", "soon"])
    with pytest.raises(LookupError, match="No such command 'nothing'"):
        parse_cli(["check", "nothing"])


def config_data() -> dict[str, str]:
    [config] = [doc for doc in manifests() if doc["kind"] == "ConfigMap"]
    return config["data"]


def test_worker_probes_ping_this_pods_worker_and_spare_busy_and_cut_off_workers() -> None:
    [worker] = containers(workload("worker"))
    found = probes(worker)
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert found[kind]["exec"]["command"][:3] == ["faceswap-jobs", "check", "worker"], kind
    liveness = found["livenessProbe"]
    # A Redis outage is not the worker's fault: restarting would only end its calls in flight.
    assert "--redis-outage-ok" in liveness["exec"]["command"]
    # Restarted only after longer than one call may take, so a busy worker (even the solo
    # pool, which answers pings between tasks) is never killed mid-call.
    patience = liveness["periodSeconds"] * liveness["failureThreshold"]
    assert patience > float(config_data()["FACESWAP_TIME_LIMIT_S"])
    for kind, probe in found.items():
        timeout = float(probe["exec"]["command"][probe["exec"]["command"].index("--timeout") + 1])
        assert probe["timeoutSeconds"] > timeout, f"{kind}: the kubelet kills it first"


def test_probes_of_the_receiver_and_exporter_answer_without_redis() -> None:
    """Liveness never depends on Redis: an outage must not restart what cannot fix it."""
    [webhook] = containers(workload("webhook"))
    assert webhook["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert webhook["readinessProbe"]["httpGet"]["path"] == "/healthz"
    [metrics] = containers(workload("metrics"))
    assert metrics["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert metrics["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_replicated_workloads_have_a_budget_that_allows_a_drain() -> None:
    budgets = [doc for doc in manifests() if doc["kind"] == "PodDisruptionBudget"]
    covered = set()
    for doc in workloads():
        replicas = doc["spec"].get("replicas", 1)
        labels = doc["spec"]["template"]["metadata"]["labels"]
        mine = [b["spec"] for b in budgets if selects(b["spec"]["selector"], labels)]
        if replicas > 1:
            [budget] = mine
            allowed = budget.get("maxUnavailable", replicas - budget.get("minAvailable", 0))
            assert 1 <= allowed < replicas, doc["metadata"]["name"]
            covered.add(doc["metadata"]["name"])
        else:
            assert not mine, f"{doc['metadata']['name']}: one replica, a budget blocks drains"
    assert covered == {"worker", "webhook"}
    assert len(budgets) == len(covered)


def validated(document: dict[str, Any], version: str) -> None:
    where = f"{document['kind']}/{document['metadata']['name']}"
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message}")


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_every_manifest_matches_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for document in manifests() + example_documents():
        if document["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            continue
        validated(document, version)
        checked += 1
    assert checked == len(manifests()) + 1  # the KEDA example's NetworkPolicy


def test_schema_validation_catches_a_misspelt_field() -> None:
    [worker] = [doc for doc in documents("worker.yaml") if doc["kind"] == "Deployment"]
    worker["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, OLDEST_KUBERNETES, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_what_the_files_say() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    documents = [doc for doc in yaml.safe_load_all(built) if doc]
    assert len(documents) == len(manifests())
    for document in documents:
        validated(document, OLDEST_KUBERNETES)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "faceswap", document["metadata"]["name"]
    override = kustomization()["images"][0]
    images = {
        container["image"]
        for document in documents
        if document["kind"] in {"Deployment", "StatefulSet"}
        for container in document["spec"]["template"]["spec"]["containers"]
    }
    assert f"{override['newName']}:{override['newTag']}" in images
    assert "faceswap-jobs" not in images


# --- KEDA example ----------------------------------------------------------------------------


def test_keda_scales_the_worker_deployment_on_both_queues_with_the_secrets_password() -> None:
    docs = {doc["kind"]: doc for doc in example_documents()}
    scaled = docs["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"] == {"name": "worker"}
    assert workload("worker")["kind"] == "Deployment"
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    defaults = Settings(_env_file=None)
    lists = set()
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "redis"
        metadata = trigger["metadata"]
        assert metadata["address"] == "redis.faceswap.svc.cluster.local:6379"
        assert int(metadata["listLength"]) == int(config_data()["FACESWAP_WORKER_CONCURRENCY"])
        assert (
            trigger["authenticationRef"]["name"]
            == docs["TriggerAuthentication"]["metadata"]["name"]
        )
        lists.add(metadata["listName"])
    assert lists == {defaults.interactive_queue, defaults.bulk_queue}
    [reference] = docs["TriggerAuthentication"]["spec"]["secretTargetRef"]
    assert reference == {"parameter": "password", "name": SECRET, "key": "redis-password"}


def test_keda_example_admits_only_kedas_operator_to_redis() -> None:
    [policy] = [doc for doc in example_documents() if doc["kind"] == "NetworkPolicy"]
    assert selects(policy["spec"]["podSelector"], pod_labels("redis"))
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    [peer] = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "keda-operator"}


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
    assert on_it == {"redis", "worker", "flower", "metrics", "webhook"}
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"
            published[name] = port
    assert published == {
        "flower": "127.0.0.1:5555:5555",
        "metrics": "127.0.0.1:9808:9808",
        "webhook": "127.0.0.1:8800:8800",
    }


def test_compose_runs_every_process_with_a_health_check() -> None:
    services = compose()["services"]
    assert {"redis", "emulator", "worker", "flower", "metrics", "webhook"} <= set(services)
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        if test[1:2] == ["faceswap-jobs"]:
            parse_cli(test[2:])
    assert services["worker"]["healthcheck"]["test"][1:4] == ["faceswap-jobs", "check", "worker"]
    assert services["webhook"]["healthcheck"]["test"][1:4] == ["faceswap-jobs", "check", "webhook"]


def test_compose_keeps_callback_mode_off_unless_asked() -> None:
    """No value in the file: an unset variable stays unset in the container (an empty one
    would be refused), and the receiver starts only with its profile."""
    services = compose()["services"]
    worker = services["worker"]["environment"]
    assert worker["FACESWAP_CALLBACK_BASE_URL"] is None
    assert worker["FACESWAP_WEBHOOK_SECRET"] is None
    assert services["webhook"]["environment"]["FACESWAP_WEBHOOK_SECRET"] is None
    assert services["webhook"]["profiles"] == ["callbacks"]
    assert all("profiles" not in s for name, s in services.items() if name != "webhook")


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


def compose_environment(service: str, host: Mapping[str, str]) -> dict[str, str]:
    """What the container gets: a variable without a value passes `host`'s through, if set."""
    env = compose(COMPOSE_ENV | STRONG)["services"][service]["environment"]
    return {
        name: str(host[name] if value is None else value)
        for name, value in env.items()
        if value is not None or name in host
    }


@pytest.mark.parametrize("service", ["worker", "flower", "metrics", "webhook"])
def test_compose_settings_are_accepted(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What compose gives a service must pass `Settings`' checks (plain http to the emulator on
    compose's private network is allowed explicitly), or the service would not start."""
    for name, value in compose_environment(service, {}).items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)

    assert settings.redis_url.startswith("redis://")
    assert settings.callback_base_url is None


@pytest.mark.parametrize("service", ["worker", "webhook"])
def test_compose_callback_mode_is_accepted(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host = {
        "FACESWAP_CALLBACK_BASE_URL": "http://webhook:8800",
        "FACESWAP_WEBHOOK_SECRET": SECRET_STRONG,
    }
    for name, value in compose_environment(service, host).items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)

    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == SECRET_STRONG


def test_the_configmap_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in config_data().items():
        monkeypatch.setenv(name, str(value))

    settings = Settings(_env_file=None)

    assert settings.api_base_url == config_data()["FACESWAP_API_BASE_URL"]
