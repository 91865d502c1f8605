"""The deploy stacks, checked without a container engine.

Docker and Kubernetes are not available where these tests run, so each file is
checked against the schema its tool uses: compose.yaml against the Compose
Specification (vendored by check-jsonschema), Kubernetes objects against the
Kubernetes OpenAPI schemas (kubernetes-validate, offline), Prometheus and
Alertmanager configs with promtool/amtool when installed. The image, CI and the
stacks must use the shipped files, never copies: one install step
(deploy/install.sh, with one lock per image), the rendered rules and dashboards
mounted or embedded unchanged.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.images import dockerfile_stages, install_images, stage_chain

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy/compose"
K8S_DIR = ROOT / "deploy/kubernetes"
RULES = ROOT / "deploy/prometheus/rules/cxpulse.rules.yml"
DASHBOARDS = sorted((ROOT / "grafana/dashboards").glob("*.json"))
K8S_VERSIONS = ("1.29.0", "1.37.0")  # an older supported cluster and the newest schemas shipped

NOT_RENDERED = "deploy/prometheus/rules/cxpulse.rules.yml is not rendered yet (cxpulse render)"
NO_DASHBOARDS = "grafana/dashboards/*.json are not rendered yet (cxpulse render)"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _render_module():
    spec = importlib.util.spec_from_file_location("cxpulse_k8s_render", K8S_DIR / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- one install source -----------------------------------------------------

IMAGES = install_images()
DEPLOYED = ("worker", "report")  # the images the Dockerfile builds (its targets of the same names)
HEAVY = {"matplotlib", "numpy"}  # the report's charting: never in the worker image


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pinned, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not an exact pin"
            assert canonicalize_name(pinned) not in pins, f"{name}: {pinned} twice"
            pins[canonicalize_name(pinned)] = version
    return pins


def _runtime_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's base dependencies and those of ``extras``."""
    project = _pyproject()
    optional = project["optional-dependencies"]
    assert set(extras) <= set(optional), f"deploy/install.sh names extras pyproject lacks: {extras}"
    return [Requirement(r) for r in project["dependencies"] + [r for e in extras for r in optional[e]]]


def _runtime_closure(extras: tuple[str, ...]) -> dict[str, str]:
    """Installed name -> version for the runtime requirements of ``extras`` and everything they need."""
    seen: dict[str, str] = {}
    todo = _runtime_requirements(extras)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen[name] = importlib.metadata.version(req.name)
        todo += [Requirement(r) for r in importlib.metadata.requires(req.name) or []]
    return seen


def test_install_sh_names_each_image_with_its_own_lock():
    assert sorted(IMAGES) == sorted(DEPLOYED)
    assert IMAGES["worker"].lock == "requirements.lock"
    assert len({image.lock for image in IMAGES.values()}) == len(IMAGES), "one lock per image"
    for image in IMAGES.values():
        assert (ROOT / image.lock).is_file(), image.lock
    assert "worker" in IMAGES["worker"].extras and "report" not in IMAGES["worker"].extras
    assert "report" in IMAGES["report"].extras


@pytest.mark.parametrize("image", DEPLOYED)
def test_each_lock_pins_exactly_its_images_runtime_closure(image: str):
    assert _lock(IMAGES[image].lock) == _runtime_closure(IMAGES[image].extras)


@pytest.mark.parametrize("image", DEPLOYED)
def test_each_lock_agrees_with_pyproject_pins(image: str):
    lock = _lock(IMAGES[image].lock)
    for req in _runtime_requirements(IMAGES[image].extras):
        assert req.specifier.contains(lock[canonicalize_name(req.name)]), f"{req} vs {IMAGES[image].lock}"


def test_the_locks_pin_their_shared_packages_alike():
    """CI installs every lock into one environment (deploy/install.sh --dev): they must agree."""
    locks = [_lock(image.lock) for image in IMAGES.values()]
    for one in locks:
        for other in locks:
            assert {n: v for n, v in one.items() if n in other} == {n: v for n, v in other.items() if n in one}


def test_the_worker_image_carries_no_matplotlib_or_numpy():
    """The report's charts are the report image's (issue item 5, "light installs")."""
    assert HEAVY.isdisjoint(_lock(IMAGES["worker"].lock)), IMAGES["worker"].lock
    assert HEAVY.isdisjoint(_runtime_closure(IMAGES["worker"].extras))
    assert HEAVY <= set(_lock(IMAGES["report"].lock))  # they did not just vanish


def test_the_base_install_is_light():
    """The producer library's install: no stream engine, no charts (docs/events.md)."""
    base = {canonicalize_name(Requirement(r).name) for r in _pyproject()["dependencies"]}
    assert base.isdisjoint({"faust-streaming", "matplotlib", "numpy", "confluent-kafka", "prometheus-client"}), base
    assert HEAVY.isdisjoint(_runtime_closure(())), "the base install's closure"


def test_the_dev_install_holds_every_images_lock_and_extras():
    """./dev and CI install with --dev: every lock, and a dev extra that holds every image's extras."""
    dev = (ROOT / "deploy/install.sh").read_text().split("--dev)", 1)[1].split(";;", 1)[0]
    for image in IMAGES.values():
        assert f'-r "$root/{image.lock}"' in dev and f'-c "$root/{image.lock}"' in dev, image.lock
    (own,) = [Requirement(r) for r in _pyproject()["optional-dependencies"]["dev"]
              if canonicalize_name(Requirement(r).name) == "cxpulse"]
    assert {e for image in IMAGES.values() for e in image.extras} <= own.extras


def test_each_commands_extra_is_told_by_modules_of_that_extra():
    """`cxpulse` names the missing extra by its modules (streams.cli.EXTRA_MODULES): each module
    must come from a distribution that extra lists, or the hint would send users to the wrong one."""
    from streams.cli import COMMAND_EXTRAS, COMMANDS, EXTRA_MODULES

    extras = _pyproject()["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(extras)
    assert set(COMMAND_EXTRAS) <= set(COMMANDS)
    assert {e for needed in COMMAND_EXTRAS.values() for e in needed} == set(EXTRA_MODULES)
    distributions = importlib.metadata.packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        listed = {canonicalize_name(Requirement(r).name) for r in extras[extra]}
        for module in modules:
            assert {canonicalize_name(d) for d in distributions[module]} & listed, (extra, module)


def test_dockerfile_installs_each_image_through_deploy_install_sh():
    """Each target copies /opt/cxpulse from a stage whose one RUN is `deploy/install.sh IMAGE`,
    built on a stage that copies that image's lock; `docker build .` gives the worker image."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" not in dockerfile, "the images install only through deploy/install.sh"
    stages = dockerfile_stages()
    assert list(stages)[-1] == "worker", "the last stage is the default target: the worker image"
    for name in DEPLOYED:
        built = stages[name].copied_from("/opt/cxpulse")
        assert built, f"stage {name} copies /opt/cxpulse from a build stage"
        runs = [run for stage in stage_chain(stages, built) for run in stage.args("RUN") if "deploy/install.sh" in run]
        assert runs == [f"PYTHON=/opt/cxpulse/bin/python sh deploy/install.sh {name}"], runs
        copied = [c for stage in stage_chain(stages, built) for c in stage.args("COPY") if not c.startswith("--from")]
        assert any(re.fullmatch(rf"(\S+ )*{re.escape(IMAGES[name].lock)}( \S+)* \S+", c) for c in copied), copied
        assert any(c.startswith("deploy/install.sh ") for c in copied), copied
    install = (ROOT / "deploy/install.sh").read_text()
    assert '-r "$root/$lock"' in install
    assert '--no-deps "$root[$extras]"' in install


def test_ci_installs_through_deploy_install_sh():
    # CI runs .ci/run, which runs `./dev test`; `./dev` holds the install step.
    scripts = [p for p in (ROOT / ".ci/run", ROOT / "dev") if p.is_file()]
    if not scripts:
        pytest.skip(".ci/run and ./dev do not exist yet")
    assert any("deploy/install.sh" in p.read_text() for p in scripts), (
        "CI must install with deploy/install.sh --dev, as the Dockerfile installs with deploy/install.sh"
    )


def test_ci_audits_and_dev_watches_every_lock():
    """.ci/audit checks every lock against the advisories; ./dev reinstalls when any lock changes."""
    audit = (ROOT / ".ci/audit").read_text()
    watched = re.search(r"^install_inputs\(\) \{.*?\n(.*?)\n\}", (ROOT / "dev").read_text(), re.M | re.S)
    assert watched, "./dev lists its install inputs in install_inputs()"
    for image in IMAGES.values():
        assert f"-r {image.lock}" in audit, image.lock
        assert image.lock in watched[1], image.lock


def test_dockerfile_runs_non_root_with_a_ready_healthcheck():
    stages = dockerfile_stages()
    assert {s.base for s in stages.values() if s.base not in stages} == {"python:3.11-slim-bookworm"}
    for name in DEPLOYED:
        chain = stage_chain(stages, name)
        user = [u for stage in chain for u in stage.args("USER")]
        assert user and not user[-1].startswith(("0", "root")), name
        assert [e for stage in chain for e in stage.args("ENTRYPOINT")][-1] == '["cxpulse"]'
        assert [c for stage in chain for c in stage.args("CMD")][-1] == f'["{name}"]'
    (health,) = [h for stage in stage_chain(stages, "worker") for h in stage.args("HEALTHCHECK")]
    assert "urllib.request" in health and "/ready" in health
    assert not [h for stage in stage_chain(stages, "report") for h in stage.args("HEALTHCHECK")], (
        "the report runs once and exits: no /ready to ask")


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    assert copied
    for sources in copied:
        for source in sources.split():
            assert source.rstrip("/") in allowed, source
            assert (ROOT / source).exists(), source


# --- compose ----------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return _load(COMPOSE_DIR / "compose.yaml")


def test_compose_matches_the_compose_specification():
    # Read as data, not imported: check-jsonschema's CLI needs a newer click than Faust allows.
    dist = importlib.metadata.distribution("check-jsonschema")
    schema_file = Path(dist.locate_file("check_jsonschema/builtin_schemas/vendor/compose-spec.json"))
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())]
    assert not errors


def test_compose_workers_scale_and_are_scraped_by_dns():
    services = _compose()["services"]
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 1
    assert "ports" not in worker and "container_name" not in worker, "`--scale worker=N` needs neither"
    assert worker["environment"]["CXPULSE_METRICS_HOST"] == "0.0.0.0"
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["topic-init"]["restart"] == "no"
    assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    job = next(j for j in _load(COMPOSE_DIR / "prometheus.yml")["scrape_configs"] if j["job_name"] == "cxpulse")
    assert job["dns_sd_configs"] == [{"names": ["worker"], "type": "A", "port": 9400, "refresh_interval": "15s"}]


def test_compose_topic_init_runs_cxpulse_topics_with_the_workers_settings():
    # The topic plan lives in streams/topics.py only: compose creates topics with `cxpulse topics`
    # from the workers' own image and environment, so partition counts and configs cannot drift.
    services = _compose()["services"]
    init, worker = services["topic-init"], services["worker"]
    assert init["image"] == worker["image"] and init["build"] == worker["build"]
    assert worker["build"]["target"] == "worker" and "worker" in dockerfile_stages(), "the worker image, by name"
    assert init["command"] == ["topics"]
    assert init["environment"] == worker["environment"]
    assert init["environment"]["CXPULSE_PARTITIONS"] == "${PARTITIONS:-8}"
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["healthcheck"] == {"disable": True}  # the image's /ready check is for workers


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's relative bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def test_compose_mounts_the_shipped_rules_dashboards_and_provisioning():
    services = _compose()["services"]
    prometheus = _bind_mounts(services["prometheus"])
    assert prometheus["/etc/prometheus/rules/cxpulse.rules.yml"] == RULES
    grafana = _bind_mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == ROOT / "grafana/provisioning"
    assert grafana["/var/lib/grafana/dashboards"] == ROOT / "grafana/dashboards"
    provider = _load(ROOT / "grafana/provisioning/dashboards/cxpulse.yml")["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"
    rendered = {RULES, ROOT / "grafana/dashboards"}  # written by `cxpulse render`; checked below
    for service in services.values():
        for host in _bind_mounts(service).values():
            assert host in rendered or host.exists(), host


def test_compose_rules_mount_source_exists():
    if not RULES.is_file():
        pytest.skip(NOT_RENDERED)
    assert RULES.is_file()


def test_grafana_datasource_has_the_uid_the_dashboards_use():
    (source,) = _load(ROOT / "grafana/provisioning/datasources/cxpulse.yml")["datasources"]
    assert source["uid"] == "prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


# --- Prometheus and Alertmanager configs ------------------------------------

PROMETHEUS_CONFIGS = [ROOT / "deploy/prometheus/prometheus.yml", COMPOSE_DIR / "prometheus.yml"]


@pytest.mark.parametrize("path", PROMETHEUS_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_prometheus_config_parses(path: Path):
    config = _load(path)
    assert {j["job_name"] for j in config["scrape_configs"]} >= {"cxpulse"}
    assert config["rule_files"]


@pytest.mark.parametrize("path", PROMETHEUS_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_promtool_accepts_prometheus_config(path: Path):
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_prometheus_config_loads_the_shipped_rules():
    (pattern,) = _load(ROOT / "deploy/prometheus/prometheus.yml")["rule_files"]
    assert RULES.match(str(ROOT / "deploy/prometheus" / pattern))


ALERTMANAGER = COMPOSE_DIR / "alertmanager.yml"
RECEIVER_OF_SEVERITY = {"critical": "cxpulse-pager", "warning": "cxpulse-chat"}


def amtool() -> str:
    """amtool (Debian: prometheus-alertmanager, which ./dev setup installs): CI must run these checks,
    so a missing amtool fails there (CI=true) and skips only on a developer's machine."""
    path = shutil.which("amtool")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("amtool is not installed (apt-get install prometheus-alertmanager; ./dev setup does it)")
    pytest.skip("amtool is not installed (apt-get install prometheus-alertmanager)")


def _alerts() -> list[dict[str, Any]]:
    if not RULES.exists():
        pytest.fail(NOT_RENDERED)
    return [r for g in _load(RULES)["groups"] for r in g["rules"] if "alert" in r]


def test_amtool_accepts_alertmanager_config():
    config = _load(ALERTMANAGER)
    # the receivers are placeholders on loopback: the compose stack sends nothing anywhere by default
    for receiver in config["receivers"]:
        assert [w["url"] for w in receiver["webhook_configs"]] == [f"http://127.0.0.1:5001/{receiver['name'].split('-')[-1]}"]
    result = subprocess.run([amtool(), "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_commented_pagerduty_and_slack_receivers_are_valid_config(tmp_path: Path):
    # Users uncomment them: check them as they would be, uncommented.
    lines = []
    for line in ALERTMANAGER.read_text().splitlines():
        match = re.fullmatch(r"(    )# ((?:pagerduty_configs|slack_configs):|  .*)", line)
        lines.append(match.group(1) + match.group(2) if match else line)
    text = "\n".join(lines) + "\n"
    receivers = {r["name"]: r for r in yaml.safe_load(text)["receivers"]}
    assert receivers["cxpulse-pager"]["pagerduty_configs"] and receivers["cxpulse-chat"]["slack_configs"]
    for key in ("runbook_url", "dashboard_url"):  # the links the alerts carry reach the page
        assert key in str(receivers["cxpulse-pager"]["pagerduty_configs"])
        assert key in str(receivers["cxpulse-chat"]["slack_configs"])
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    result = subprocess.run([amtool(), "check-config", str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _route(labels: dict[str, str]) -> str:
    result = subprocess.run(
        [amtool(), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_alertmanager_routes_every_shipped_alert_by_its_severity():
    for rule in _alerts():
        labels = {"alertname": rule["alert"], **rule["labels"], "storefront": "shop", "family": "order"}
        assert _route(labels) == RECEIVER_OF_SEVERITY[rule["labels"]["severity"]], rule["alert"]


def test_alertmanager_inhibitions_name_shipped_alerts_and_labels():
    # The inhibitions mute kind="kpi" alerts of a family: the sources must exist and carry what
    # `equal` compares, the targets must be exactly the KPI alerts (tests/integration checks a live run).
    alerts = {r["alert"]: r for r in _alerts()}
    kpi = {name for name, r in alerts.items() if r["labels"].get("kind") == "kpi"}
    assert kpi >= {"CxpulseConversionDrop", "CxpulseConversionCollapse", "CxpulseRevenuePerVisitorDrop",
                   "CxpulseNpsDrop", "CxpulseCsatDrop", "CxpulseFirstResponseSlow", "CxpulseResolutionSlow"}
    assert all(alerts[name]["labels"].get("family") for name in kpi)
    rules = _load(ALERTMANAGER)["inhibit_rules"]
    sources = {re.fullmatch(r'alertname="(\w+)"', rule["source_matchers"][0]).group(1) for rule in rules}
    assert sources == {"CxpulseWindowsBehind", "CxpulseBrokerUnreachable"} and sources <= set(alerts)
    assert "family" in alerts["CxpulseWindowsBehind"]["expr"].split(" ")[0]  # family:...:max, by family
    assert all(rule["target_matchers"][0] == 'kind="kpi"' for rule in rules)


# --- Kubernetes -------------------------------------------------------------


def _kustomize_resources(folder: Path) -> list[Path]:
    """Every manifest file a kustomization pulls in, following sub-folders."""
    files = []
    for entry in _load(folder / "kustomization.yaml").get("resources", []):
        path = folder / entry
        assert path.exists(), f"{folder / 'kustomization.yaml'} names missing {entry}"
        files += _kustomize_resources(path) if path.is_dir() else [path]
    return files


def _k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for path in _kustomize_resources(K8S_DIR):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                objects.append((str(path.relative_to(ROOT)), doc))
    return objects


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _k8s_objects() if doc["kind"] == kind]


# The Prometheus Operator's CRDs are not in kubernetes-validate; these hold the
# fields we use to the operator's monitoring.coreos.com/v1 schema.
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "PodMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "podMetricsEndpoints"],
                "properties": {
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                    },
                    "podMetricsEndpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                        "properties": {
                                            "expr": {"type": ["string", "integer"]},
                                            "for": {"type": "string"},
                                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


def test_every_kubernetes_object_matches_its_schema():
    import kubernetes_validate

    objects = _k8s_objects()
    assert {doc["kind"] for _, doc in objects} >= {"Namespace", "ConfigMap", "Secret", "Deployment", "PodMonitor"}
    for source, doc in objects:
        if doc["kind"] in CRD_SCHEMAS:
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{source} ({doc['kind']}) against Kubernetes {version}: {exc.message}")


def test_kubernetes_example_secret_holds_only_placeholders():
    (secret,) = _by_kind("Secret")
    assert set(secret["stringData"].values()) <= {"REPLACE_ME"} | {
        v for v in secret["stringData"].values() if v.startswith("REPLACE_ME")
    }


def test_deployment_fits_partitions_and_probes_the_worker():
    (deployment,) = _by_kind("Deployment")
    settings = next(c for c in _by_kind("ConfigMap") if c["metadata"]["name"] == "cxpulse-settings")["data"]
    assert 1 <= deployment["spec"]["replicas"] <= int(settings["CXPULSE_PARTITIONS"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == int(settings["CXPULSE_METRICS_PORT"])
    assert settings["CXPULSE_METRICS_HOST"] == "0.0.0.0"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    (secret,) = _by_kind("Secret")
    for var in ("CXPULSE_SASL_USERNAME", "CXPULSE_SASL_PASSWORD"):
        assert env[var]["name"] == secret["metadata"]["name"] and env[var]["key"] in secret["stringData"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    tls = next(v for v in pod["volumes"] if v["name"] == "kafka-tls")["secret"]
    assert settings["CXPULSE_SSL_CAFILE"] == f"{mounts['kafka-tls']}/{tls['items'][0]['path']}"


def test_podmonitor_selects_the_worker_pods_port():
    (deployment,) = _by_kind("Deployment")
    (monitor,) = _by_kind("PodMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= port_names


# --- generated from the shipped files ----------------------------------------


def test_kubernetes_generated_folder_is_up_to_date():
    stale = _render_module().stale(ROOT)
    assert not stale, f"run `python deploy/kubernetes/render.py`: stale {stale}"


def test_prometheusrule_carries_the_shipped_rules():
    if not RULES.is_file():
        pytest.skip(NOT_RENDERED)
    (rule,) = _by_kind("PrometheusRule")
    assert rule["spec"] == _load(RULES)


def test_prometheusrule_passes_promtool(tmp_path: Path):
    if not RULES.is_file():
        pytest.skip(NOT_RENDERED)
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    (rule,) = _by_kind("PrometheusRule")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run(["promtool", "check", "rules", str(extracted)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_configmaps_carry_the_shipped_dashboards_byte_for_byte():
    if not DASHBOARDS:
        pytest.skip(NO_DASHBOARDS)
    embedded = {}
    for configmap in _by_kind("ConfigMap"):
        if configmap["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            embedded.update(configmap["data"])
    assert len(embedded) == len(DASHBOARDS)
    for path in DASHBOARDS:
        key = re.sub(r"[^-._a-zA-Z0-9]", "-", path.name)
        assert embedded[key].encode() == path.read_bytes(), path.name


def test_render_embeds_rules_and_dashboards_unchanged(tmp_path: Path):
    """The mechanism itself, on sample sources (runs before the real ones exist)."""
    rules_text = (
        "# Generated\ngroups:\n  - name: cxpulse\n    rules:\n"
        "      - record: storefront:cxpulse_conversion:ratio_rate5m\n"
        "        expr: |\n          sum(rate(a_total[5m]))\n            / sum(rate(b_total[5m]))\n"
    )
    dashboard_text = '{\n  "title": "CX",  \n\t"panels": []\n}\n'  # trailing spaces and a tab
    (tmp_path / "deploy/prometheus/rules").mkdir(parents=True)
    (tmp_path / "deploy/prometheus/rules/cxpulse.rules.yml").write_text(rules_text)
    (tmp_path / "grafana/dashboards").mkdir(parents=True)
    (tmp_path / "grafana/dashboards/CX Overview.json").write_text(dashboard_text)
    render = _render_module()
    files = render.render(tmp_path)
    assert yaml.safe_load(files["kustomization.yaml"])["resources"] == ["dashboard-cx-overview.yaml", "prometheusrule.yaml"]
    assert yaml.safe_load(files["prometheusrule.yaml"])["spec"] == yaml.safe_load(rules_text)
    configmap = yaml.safe_load(files["dashboard-cx-overview.yaml"])
    assert configmap["metadata"]["name"] == "cxpulse-dashboard-cx-overview"
    assert configmap["data"] == {"CX-Overview.json": dashboard_text}
    assert all(text.startswith("# Generated by deploy/kubernetes/render.py") for text in files.values())
    assert render.write(tmp_path) == sorted(files)
    assert render.stale(tmp_path) == [] and render.write(tmp_path) == []
    (tmp_path / "grafana/dashboards/CX Overview.json").unlink()
    assert render.stale(tmp_path) == ["dashboard-cx-overview.yaml", "kustomization.yaml"]


def test_kustomize_build_gives_valid_objects_in_the_namespace():
    """What `kubectl apply -k` would send, built by kubectl's own kustomize (offline)."""
    import kubernetes_validate

    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed (it carries kustomize)")
    result = subprocess.run(["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(built) == len(_k8s_objects())
    for doc in built:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cxpulse"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "cxpulse", doc["kind"]
        if doc["kind"] in CRD_SCHEMAS:
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
        else:
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
    (deployment,) = [d for d in built if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "cxpulse:0.1.0"
