"""Settings from the environment and an optional TOML file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.core.backends import resolve_model
from orchestrator.core.backends.inprocess import cpu_has_bf16, engine_dtype
from orchestrator.core.errors import ConfigurationError, ModelNotFoundError
from orchestrator.core.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ttc.toml or .env
    for name in ("REDIS_URL", "TTC_REDIS_URL", "TTC_CONFIG_FILE", "TTC_BACKEND", "TTC_MODEL", "TTC_REMOTE__URLS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_run_the_embedded_stack() -> None:
    settings = Settings()
    assert settings.backend == "inprocess" and settings.model == "qwen2.5-coder-0.5b"
    assert Settings(model=" ").model == "qwen2.5-coder-0.5b"  # empty is the default, not a path
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
    with pytest.raises(ValidationError, match="TTC_REMOTE__URLS"):
        Settings()
    monkeypatch.setenv("TTC_REMOTE__URLS", "http://a:8000/, http://b:8000")
    assert Settings().remote.urls == ["http://a:8000", "http://b:8000"]
    monkeypatch.setenv("TTC_REMOTE__URLS", '["http://c:8000/"]')
    assert Settings().remote.urls == ["http://c:8000"]


def test_a_renamed_variable_is_refused_with_its_new_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_PRM_URL", "http://prm:8000")
    with pytest.raises(ConfigurationError, match="TTC_PRM_URL is now TTC_PRM__URL"):
        Settings()
    monkeypatch.delenv("TTC_PRM_URL")
    monkeypatch.setenv("TTC_PRM__URL", "http://prm:8000")
    assert Settings().prm.url == "http://prm:8000"


def test_the_engine_dtype_follows_the_hardware_unless_set() -> None:
    assert engine_dtype(None, on_cpu=True, bf16=False) == "float32"  # bf16 without the instructions is slow
    assert engine_dtype(None, on_cpu=True, bf16=True) == "bfloat16"
    assert engine_dtype(None, on_cpu=False) == "auto"
    assert engine_dtype("float16", on_cpu=True, bf16=False) == "float16"  # an explicit setting wins
    assert Settings().engine.dtype is None


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    with_bf16, without = tmp_path / "a", tmp_path / "b"
    with_bf16.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n")
    without.write_text("processor : 0\nflags : fpu avx2\n")
    assert cpu_has_bf16(with_bf16) and not cpu_has_bf16(without) and not cpu_has_bf16(tmp_path / "missing")


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
