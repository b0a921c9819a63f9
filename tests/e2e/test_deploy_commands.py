"""The image's entry points, exercised by running the commands the image runs, here, with no container engine.

From deploy/compose.yaml: its set-up commands (the comment at its top: `fedgate certs init`, `fedgate gateway
keygen`, the demo data), then each fedgate service's bind mounts laid out in a folder standing for the
container's file system, its configuration rendered with those paths, and the Dockerfile's ENTRYPOINT with the
service's `command`, run as a process with the service's environment. The gateway answers the compose health
check (the image's HEALTHCHECK, `fedgate health`) on its plaintext health port; both adapters register; a
supervisor lists their datasets; SIGTERM (what `docker stop` sends) stops each with status 0.

From the Kubernetes overlay likewise: the gateway Deployment's args with its ConfigMap's gateway.toml and the
Secrets' files mounted where its volumeMounts say, answering the grpc probe's port.

What differs from a container, and only that: paths are prefixed by the folder, 0.0.0.0 and service names
become 127.0.0.1 and free ports, PostgreSQL is the test database (a schema of its own) or, where it is
unreachable, the embedded SQLite stores, and no span is exported (no collector runs here).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

import support
from deploy_files import (
    COMPOSE,
    DEPLOY,
    OVERLAY,
    bind_mounts,
    compose,
    config_map_file,
    entrypoint_and_cmd,
    fedgate_services,
    healthcheck_command,
    k8s_objects,
    kustomize,
)

FEDGATE = str(Path(sys.executable).parent / "fedgate")
CONTAINER_PREFIXES = ("/etc/fedgate", "/var/lib/fedgate", "/srv/fedgate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _program(argv: list[str]) -> list[str]:
    """The image's programs, from this virtualenv (installed from the same sources)."""
    if argv[0] == "fedgate":
        return [FEDGATE, *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"the image has no {argv[0]!r}")


def setup_commands() -> list[list[str]]:
    """The commands compose.yaml's header says to run before the first `up` (fedgate and python ones)."""
    lines = COMPOSE.read_text(encoding="utf-8").split("Before the first `up`", 1)[1].split("Then:", 1)[0]
    commands = [shlex.split(line.lstrip("# ").strip()) for line in lines.splitlines()]
    return [c for c in commands if c and c[0] in ("fedgate", "python")]


@contextmanager
def postgres_url() -> Iterator[str | None]:
    """The test PostgreSQL with a schema of its own, or None (SQLite) where it is unreachable."""
    if not support.postgres_reachable():
        yield None
        return
    with support.private_pg_schema("fg_deploy") as url:
        yield url


class Container:
    """One service's file system under `root`: its mounts laid out, its configuration rendered for this host."""

    def __init__(self, root: Path, addresses: dict[str, str], pg_url: str | None) -> None:
        self.root = root
        self.addresses = addresses  # what the container's addresses become here, e.g. "0.0.0.0:8081" -> a port
        self.pg_url = pg_url

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def mount(self, source: Path, target: str) -> None:
        dest = self.path(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy2(source, dest)

    def render(self, text: str) -> str:
        """A configuration as this host runs it: container paths under root, addresses mapped, PostgreSQL local."""
        for prefix in CONTAINER_PREFIXES:
            text = text.replace(f'"{prefix}', f'"{self.root}{prefix}')
        for theirs, ours in self.addresses.items():
            text = text.replace(f'"{theirs}"', f'"{ours}"')
        lines = []
        for line in text.splitlines():
            if line.startswith(("registry_url", "audit_url")):
                if self.pg_url is None:
                    continue  # the embedded SQLite stores in data_dir
                line = f'{line.split("=", 1)[0].strip()} = "{self.pg_url}"'
            lines.append(line)
        return "\n".join(lines) + "\n"


def _env(service_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    for key, value in service_env.items():
        if key.startswith("OTEL_") or "${" in str(value):
            continue  # no collector here; the PostgreSQL password is the operator's (.env), the test DB needs none
        env[key] = str(value)
    return env


class Running:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        with log.open("wb") as out:
            proc = subprocess.Popen(_program(argv), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))

    def check_alive(self, logs: Path) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n"
                                     + (logs / f"{name}.log").read_text(errors="replace")[-3000:])

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM in reverse order of start (adapters, then the gateway), as `docker stop` and kubelet do."""
        codes: dict[str, int | None] = {}
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            codes[name] = proc.returncode
        self.procs.clear()
        return codes


def wait_healthy(health_argv: list[str], env: dict[str, str], running: Running, logs: Path,
                 timeout_s: float = 90) -> None:
    """Run the health check command until it exits 0, as the container runtime would."""
    deadline = time.monotonic() + timeout_s
    while True:
        running.check_alive(logs)
        result = subprocess.run(_program(health_argv), env=env, capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            assert result.stdout.strip() == "SERVING"
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{health_argv} never passed: {result.stdout}{result.stderr}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def deploy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/ in which compose.yaml's set-up commands have been run (read-only to the tests)."""
    work = tmp_path_factory.mktemp("repo")
    shutil.copytree(DEPLOY, work / "deploy", ignore=shutil.ignore_patterns("certs", "keys", "demo", ".env"))
    commands = setup_commands()
    assert [c[:3] for c in commands if c[0] == "fedgate"] == [["fedgate", "certs", "init"],
                                                               ["fedgate", "gateway", "keygen"]]
    for command in commands:
        result = subprocess.run(_program(command), cwd=work, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return work / "deploy"


def test_compose_services_start_as_the_containers_would(deploy_dir: Path, tmp_path: Path) -> None:
    services = fedgate_services(compose())
    entrypoint, _ = entrypoint_and_cmd()
    logs = tmp_path / "logs"
    logs.mkdir()
    # Every service's ports on this host: its mTLS and health ports, and the compose names it is dialled by.
    ports = {name: (_free_port(), _free_port()) for name in services}
    dialled = {f"{name}:7443": f"127.0.0.1:{ports[name][0]}" for name in services}
    running = Running()
    with ExitStack() as stack, postgres_url() as pg_url:
        stack.callback(running.stop_all)
        health_envs = {}
        for name in ("gateway", "adapter-hrss", "adapter-samr"):  # compose's depends_on order
            svc = services[name]
            container = Container(tmp_path / "containers" / name,
                                  {"0.0.0.0:7443": f"127.0.0.1:{ports[name][0]}",
                                   "0.0.0.0:8081": f"127.0.0.1:{ports[name][1]}", **dialled}, pg_url)
            binds, named = bind_mounts(svc)
            for bind in binds:
                container.mount(deploy_dir / bind.source, bind.target)
            for target in named:
                container.path(target).mkdir(parents=True)
            command = svc["command"]
            config = container.path(command[command.index("--config") + 1])
            config.write_text(container.render(config.read_text(encoding="utf-8")), encoding="utf-8")
            argv = [*entrypoint, *command[:-1], str(config)]
            env = _env(svc.get("environment", {}))
            running.start(name, argv, env, cwd=container.path("/var/lib/fedgate"), log=logs / f"{name}.log")
            # The service's health check, as compose runs it, on this host's health port.
            health = [a.replace("127.0.0.1:8081", f"127.0.0.1:{ports[name][1]}")
                      for a in svc["healthcheck"]["test"][1:]]
            assert health[:2] == healthcheck_command()
            wait_healthy(health, env, running, logs)
            health_envs[name] = (health, env)

        # Both adapters registered: a supervisor (with the certificate the set-up made) sees their datasets.
        certs = deploy_dir / "certs"
        listed = subprocess.run(
            [FEDGATE, "datasets", "--json", "--gateway", f"127.0.0.1:{ports['gateway'][0]}",
             "--ca", str(certs / "ca.pem"), "--cert", str(certs / "supervisor-dcb-alice.pem"),
             "--key", str(certs / "supervisor-dcb-alice.key")], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        datasets = {f"{d['department']}.{d['name']}" for d in json.loads(listed.stdout)}
        assert datasets == {"hrss.subsidies", "samr.companies"}
        running.check_alive(logs)
        codes = running.stop_all()
    assert codes == {"adapter-samr": 0, "adapter-hrss": 0, "gateway": 0}, {
        n: (logs / f"{n}.log").read_text(errors="replace")[-2000:] for n, c in codes.items() if c != 0}
    # Stopped, the health check fails as it should.
    health, env = health_envs["gateway"]
    assert subprocess.run(_program([*health, "--timeout", "1"]), env=env, capture_output=True).returncode == 1


def _secret_files(certs: Path, keys: Path) -> dict[str, dict[str, Path]]:
    """The Secrets docs/deployment.md creates, from the files the set-up commands made."""
    return {
        "fedgate-gateway-tls": {n: certs / n for n in ("ca.pem", "gateway.pem", "gateway.key", "officer-seal.pub")},
        "fedgate-log-signing": {n: keys / n for n in ("log-signing.key", "log-signing.vkey")},
    }


def test_k8s_gateway_starts_as_its_pod_would(deploy_dir: Path, tmp_path: Path) -> None:
    objects = k8s_objects(kustomize(OVERLAY))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "fedgate-gateway"]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    (container_spec,) = pod["containers"]
    entrypoint, _ = entrypoint_and_cmd()
    secrets = _secret_files(deploy_dir / "certs", deploy_dir / "keys")
    port, health_port = _free_port(), _free_port()
    probe_port = container_spec["readinessProbe"]["grpc"]["port"]
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Running()
    with ExitStack() as stack, postgres_url() as pg_url:
        stack.callback(running.stop_all)
        container = Container(tmp_path / "pod", {"0.0.0.0:7443": f"127.0.0.1:{port}",
                                                 f"0.0.0.0:{probe_port}": f"127.0.0.1:{health_port}"}, pg_url)
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container_spec["volumeMounts"]:
            volume = volumes[mount["name"]]
            target = container.path(mount["mountPath"])
            if "configMap" in volume:
                name = volume["configMap"]["name"].rsplit("-", 1)[0]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(container.render(config_map_file(objects, name, mount["subPath"])))
            elif "secret" in volume:
                target.mkdir(parents=True)
                for key, source in secrets[volume["secret"]["secretName"]].items():
                    shutil.copy2(source, target / key)
            else:
                target.mkdir(parents=True)
        args = container_spec["args"]
        config = container.path(args[args.index("--config") + 1])
        argv = [*entrypoint, *args[:-1], str(config)]
        env = _env({e["name"]: e.get("value", "${secret}") for e in container_spec.get("env", [])})
        running.start("gateway", argv, env, cwd=container.path("/var/lib/fedgate"), log=logs / "gateway.log")
        # The kubelet's grpc probe is a grpc.health.v1 Check of the whole server on that port: `fedgate health`.
        wait_healthy(["fedgate", "health", f"127.0.0.1:{health_port}"], env, running, logs)
        codes = running.stop_all()
    assert codes == {"gateway": 0}, (logs / "gateway.log").read_text(errors="replace")[-2000:]
