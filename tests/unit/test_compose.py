"""docker-compose.yml describes a real deployment: checked by parsing it (and by
`docker compose config` where the compose plugin exists)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.core.settings import RENAMED_VARIABLES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_health_checks(compose: dict) -> None:
    services = compose["services"]
    assert {"redis", "vllm", "api", "worker"} <= set(services)
    for name in ("redis", "vllm", "api", "worker"):
        assert services[name]["healthcheck"]["test"], f"{name} needs a health check"


def test_redis_persists_with_aof_on_a_volume(compose: dict) -> None:
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-data" in compose["volumes"]


def test_vllm_is_the_official_server_on_a_gpu_with_a_configurable_model(compose: dict) -> None:
    vllm = compose["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert any(arg.startswith("--model=${MODEL") for arg in vllm["command"])
    assert "--enable-prompt-tokens-details" in vllm["command"]  # cached-token accounting
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]


def test_api_points_at_the_fleet_and_redis(compose: dict) -> None:
    api = compose["services"]["api"]
    env = api["environment"]
    assert env["TTC_BACKEND"] == "remote" and env["TTC_REMOTE__URLS"] == "http://vllm:8000"
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert "8000:8000" in api["ports"]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert (ROOT / "Dockerfile").exists()


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose plugin is not installed here",
)
def test_docker_compose_config_accepts_it() -> None:
    done = subprocess.run(["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_workers_share_the_fleet_and_redis_and_the_api_leaves_jobs_to_them(compose: dict) -> None:
    worker, api = compose["services"]["worker"], compose["services"]["api"]
    assert worker["command"] == ["ttc", "worker"]
    assert worker["environment"]["REDIS_URL"] == api["environment"]["REDIS_URL"]
    assert worker["environment"]["TTC_REMOTE__URLS"] == api["environment"]["TTC_REMOTE__URLS"]
    assert worker["deploy"]["replicas"] >= 2
    assert api["environment"]["TTC_EMBEDDED_WORKER"] == "false"


def test_the_worker_health_check_reads_the_heartbeat_the_worker_writes(compose: dict) -> None:
    worker = compose["services"]["worker"]
    heartbeat, check = worker["environment"]["TTC_WORKER_HEARTBEAT_FILE"], " ".join(worker["healthcheck"]["test"])
    assert heartbeat in check and "getmtime" in check


def test_the_image_installs_the_service_with_every_package_and_runs_as_a_user() -> None:
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in packages:
        assert f"COPY {package.rstrip('*')} " in dockerfile, f"the image leaves out {package}"
    assert "'.[server]'" in dockerfile  # the base install is the SDK alone
    assert "\nUSER ttc" in dockerfile and "useradd" in dockerfile


def test_no_service_sets_a_renamed_variable(compose: dict) -> None:
    for service in compose["services"].values():
        assert not set(service.get("environment") or {}) & set(RENAMED_VARIABLES)
