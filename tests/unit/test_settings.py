"""Settings from the environment and an optional TOML file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.backends import resolve_model
from orchestrator.errors import ConfigurationError, ModelNotFoundError
from orchestrator.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ttc.toml or .env
    for name in ("REDIS_URL", "TTC_REDIS_URL", "TTC_CONFIG_FILE", "TTC_BACKEND", "TTC_MODEL", "TTC_REMOTE_URLS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_run_the_embedded_stack() -> None:
    settings = Settings()
    assert settings.backend == "inprocess" and settings.uses_embedded_model
    assert settings.redis_url is None
    assert settings.engine.block_size == 32


def test_environment_overrides_including_nested_and_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("TTC_ENGINE__MAX_MODEL_LEN", "4096")
    monkeypatch.setenv("TTC_BUDGET__MAX_TOKENS", "999")
    settings = Settings()
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.engine.max_model_len == 4096
    assert settings.budget.max_tokens == 999


def test_remote_backend_needs_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_BACKEND", "remote")
    with pytest.raises(ValidationError, match="TTC_REMOTE_URLS"):
        Settings()
    monkeypatch.setenv("TTC_REMOTE_URLS", "http://a:8000/, http://b:8000")
    assert Settings().remote_urls == ["http://a:8000", "http://b:8000"]


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('port = 9100\nmodel = "org/model"\n[engine]\nmax_model_len = 1024\n')
    monkeypatch.setenv("TTC_CONFIG_FILE", str(config))
    monkeypatch.setenv("TTC_MODEL", "other/model")
    settings = Settings()
    assert (settings.port, settings.engine.max_model_len, settings.model) == (9100, 1024, "other/model")


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TTC_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigurationError, match=r"absent\.toml"):
        Settings()


def test_model_resolution_errors_name_the_setting(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="TTC_MODEL"):
        resolve_model(Settings(model=str(tmp_path / "missing-dir")))
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        resolve_model(Settings(model=str(tmp_path)))
    assert resolve_model(Settings(model="HuggingFaceTB/SmolLM2-135M-Instruct")) == "HuggingFaceTB/SmolLM2-135M-Instruct"
