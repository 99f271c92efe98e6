"""docker/k8s: probes hit the app's routes, names and ports line up, the pod is locked down,
and the ConfigMap plus Secret make a prod configuration the bridge accepts once the
placeholders are replaced (and refuses while they are not)."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from channel_bridge import settings as settings_module
from channel_bridge.settings import Settings
from tests.foundation.conftest import DOCKER, load_k8s, one
from tests.foundation.test_container_files import cli_accepts, parse_dockerfile

K8S = load_k8s()
DEPLOYMENT = one(K8S, "Deployment")
SERVICE = one(K8S, "Service")
INGRESS = one(K8S, "Ingress")
JOB = one(K8S, "Job")
SECRET = one(K8S, "Secret")
CONFIGMAP = one(K8S, "ConfigMap")
POD = DEPLOYMENT["spec"]["template"]["spec"]
CONTAINER = POD["containers"][0]
SETTING_NAMES = {f"BRIDGE_{name.upper()}" for name in Settings.model_fields}
SECRET_SETTINGS = {
    f"BRIDGE_{name.upper()}"
    for name, info in Settings.model_fields.items()
    if SecretStr in getattr(info.annotation, "__args__", (info.annotation,))
}


def image_port() -> int:
    _args, stages = parse_dockerfile((DOCKER / "Dockerfile").read_text())
    return int(stages[-1].last("EXPOSE").split("/")[0])


def container_port(name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert name_or_number in ports, f"no container port named {name_or_number!r}"
    return int(ports[name_or_number])


def test_probes_hit_the_apps_health_routes_on_the_served_port(
    served: Callable[..., dict[str, int]],
) -> None:
    liveness = CONTAINER["livenessProbe"]["httpGet"]
    readiness = CONTAINER["readinessProbe"]["httpGet"]
    startup = CONTAINER["startupProbe"]["httpGet"]
    assert liveness["path"] == "/healthz" and startup["path"] == "/healthz"
    assert readiness["path"] == "/readyz"
    # The real app answers both 200 when healthy.
    assert served(liveness["path"], readiness["path"]) == {"/healthz": 200, "/readyz": 200}
    serve = cli_accepts(CONTAINER["args"])
    assert serve.command.name == "serve" and serve.params["host"] == "0.0.0.0"
    for probe in (liveness, readiness, startup):
        assert container_port(probe["port"]) == serve.params["port"] == image_port()


def test_two_replicas_roll_without_losing_capacity() -> None:
    assert DEPLOYMENT["spec"]["replicas"] == 2
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = one(K8S, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("pod", [POD, JOB["spec"]["template"]["spec"]], ids=["deployment", "job"])
def test_pods_run_non_root_read_only_with_limits(pod: dict[str, Any]) -> None:
    dockerfile_uid = int(
        parse_dockerfile((DOCKER / "Dockerfile").read_text())[1][-1].last("USER").split(":")[0]
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    # A read-only root still needs a writable /tmp.
    assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}


def test_settings_come_from_the_configmap_and_the_mounted_secret(monkeypatch) -> None:
    with monkeypatch.context() as patch:
        # The folder settings.py reads secrets from when BRIDGE_SECRETS_DIR is not set.
        patch.delenv("BRIDGE_SECRETS_DIR", raising=False)
        patch.setattr(Path, "is_dir", lambda self: True)
        secrets_dir = settings_module._secrets_dir()
    for pod in (POD, JOB["spec"]["template"]["spec"]):
        container = pod["containers"][0]
        assert container["envFrom"] == [{"configMapRef": {"name": CONFIGMAP["metadata"]["name"]}}]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        mount = mounts[secrets_dir]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["secret"]["secretName"] == SECRET["metadata"]["name"]


def test_configmap_and_secret_hold_only_known_settings_each_in_its_place() -> None:
    config_keys = set(CONFIGMAP["data"])
    secret_keys = set(SECRET["stringData"])
    assert config_keys <= SETTING_NAMES, f"unknown settings: {config_keys - SETTING_NAMES}"
    assert secret_keys <= SETTING_NAMES, f"unknown settings: {secret_keys - SETTING_NAMES}"
    assert not config_keys & secret_keys
    assert not config_keys & SECRET_SETTINGS, "a secret setting is in the ConfigMap"
    # Every secret the bridge knows has its line in the example, plus the URL (it has a password).
    assert secret_keys == SECRET_SETTINGS | {"BRIDGE_DATABASE_URL"}


def _settings_from_manifests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret_values: dict[str, str]
) -> Settings:
    """Settings as a pod sees them: ConfigMap as environment, Secret as files."""
    for name in [n for n in os.environ if n.startswith("BRIDGE_")]:
        monkeypatch.delenv(name)
    for key, value in CONFIGMAP["data"].items():
        monkeypatch.setenv(key, value)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for key, value in secret_values.items():
        (secrets_dir / key).write_text(value + "\n")
    return Settings(_env_file=None, _secrets_dir=secrets_dir)


def test_the_example_secret_is_refused_in_prod(tmp_path, monkeypatch) -> None:
    settings = _settings_from_manifests(tmp_path, monkeypatch, SECRET["stringData"])
    assert settings.env == "prod"
    problems = "\n".join(settings.problems())
    for key in SECRET["stringData"]:
        assert key in problems, f"the placeholder {key} is not refused in prod"


def test_the_manifests_make_a_usable_prod_configuration_with_real_secrets(
    tmp_path, monkeypatch
) -> None:
    real = {key: secrets.token_urlsafe(36) for key in SECRET["stringData"]}
    real["BRIDGE_DATABASE_URL"] = f"postgresql://bridge:{real['BRIDGE_SECRET_KEY']}@db:5432/bridge"
    settings = _settings_from_manifests(tmp_path, monkeypatch, real)
    assert settings.problems() == []
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == real["BRIDGE_SECRET_KEY"]
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.effective_log_format == "json" and not settings.sandbox_mode


def test_service_and_ingress_reach_the_container_port() -> None:
    pod_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert SERVICE["spec"]["selector"].items() <= pod_labels.items()
    service_ports = {p["name"]: p for p in SERVICE["spec"]["ports"]}
    for port in service_ports.values():
        assert container_port(port["targetPort"]) == image_port()
    rules = INGRESS["spec"]["rules"]
    for rule in rules:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == SERVICE["metadata"]["name"]
            assert backend["port"]["name"] in service_ports


def test_ingress_is_tls_only_and_exposes_the_webhooks_alone(route_templates: set[str]) -> None:
    tls_hosts = {host for entry in INGRESS["spec"]["tls"] for host in entry["hosts"]}
    assert all(entry["secretName"] for entry in INGRESS["spec"]["tls"])
    prefixes = []
    for rule in INGRESS["spec"]["rules"]:
        assert rule["host"] in tls_hosts
        prefixes += [p["path"] for p in rule["http"]["paths"] if p["pathType"] == "Prefix"]
    # Each public prefix leads to a webhook route the app really serves ...
    for prefix in prefixes:
        assert any(route.startswith(prefix) for route in route_templates), prefix
    # ... and nothing operational or administrative is published.
    for private in ("/admin/v1/channels", "/metrics", "/healthz", "/readyz", "/docs", "/sandbox/"):
        assert not any(private.startswith(prefix) for prefix in prefixes), private
    assert any(re.fullmatch(r"/axp/callbacks/\{\w+\}/notifications", r) for r in route_templates)


def test_migration_job_runs_migrate_with_the_deployments_image_and_config() -> None:
    pod = JOB["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert cli_accepts(container["args"]).command.name == "migrate"
    assert container["image"] == CONTAINER["image"]
    assert pod["restartPolicy"] == "Never"
    assert json.dumps(container["envFrom"]) == json.dumps(CONTAINER["envFrom"])


def test_pool_sizing_fits_postgresql_during_a_rollout() -> None:
    """replicas + maxSurge pods run at once; each holds pool + overflow + one LISTEN
    connection, the migration Job one more. PostgreSQL's defaults: 100, 3 reserved."""
    pods = (
        DEPLOYMENT["spec"]["replicas"] + DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    )
    data = CONFIGMAP["data"]
    per_pod = int(data["BRIDGE_DB_POOL_SIZE"]) + int(data["BRIDGE_DB_MAX_OVERFLOW"]) + 1
    assert pods * per_pod + 1 <= 100 - 3, (pods, per_pod)


def test_a_network_policy_keeps_the_cluster_away_from_the_admin_api() -> None:
    policy = one(K8S, "NetworkPolicy")
    pod_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    # Every peer is named: no empty selector (which would admit every pod) and no ipBlock.
    peers = rule["from"]
    assert peers and all(
        set(peer) <= {"namespaceSelector", "podSelector"} and any(peer.values()) for peer in peers
    )
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in peers
        if "namespaceSelector" in peer
    }
    assert "ingress-nginx" in namespaces
    assert INGRESS["spec"]["ingressClassName"] == "nginx"
    assert [container_port(port["port"]) for port in rule["ports"]] == [image_port()]


def test_the_configmaps_example_values_are_refused_in_prod(tmp_path, monkeypatch) -> None:
    from channel_bridge.startup import example_values

    real = {key: secrets.token_urlsafe(36) for key in SECRET["stringData"]}
    real["BRIDGE_DATABASE_URL"] = f"postgresql://bridge:{real['BRIDGE_SECRET_KEY']}@db:5432/bridge"
    settings = _settings_from_manifests(tmp_path, monkeypatch, real)
    named = "\n".join(example_values(settings))
    for key in (
        "BRIDGE_PUBLIC_BASE_URL",
        "BRIDGE_NEXUS_BASE_URL",
        "BRIDGE_NEXUS_CCID",
        "BRIDGE_AKIXI_URL",
    ):
        assert key in named, key
    # The same configuration with the tenant's values is accepted.
    for key, value in {
        "BRIDGE_PUBLIC_BASE_URL": "https://bridge.acme-corp.net",
        "BRIDGE_NEXUS_BASE_URL": "https://api.nexus.acme-corp.net",
        "BRIDGE_NEXUS_CCID": "7d1c9a52-3e8b-4f0a-9c61-2b5e8d4f7a10",
        "BRIDGE_AKIXI_URL": "https://akixi.acme-corp.net/CCAWS/WS",
    }.items():
        monkeypatch.setenv(key, value)
    assert example_values(Settings(_env_file=None, _secrets_dir=tmp_path / "secrets")) == []
