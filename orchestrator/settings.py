"""Service settings: environment variables (``TTC_*``) over an optional TOML file.

Precedence, highest first: constructor arguments, environment, ``.env``, the TOML file
named by ``TTC_CONFIG_FILE`` (default ``./ttc.toml`` when present), defaults.
Nested values use ``__``: ``TTC_ENGINE__MAX_MODEL_LEN=4096``. ``REDIS_URL`` is
accepted as well as ``TTC_REDIS_URL``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from orchestrator.backends.inprocess import EngineOptions
from orchestrator.errors import ConfigurationError


def _user_dir(env_var: str, fallback: str) -> Path:
    base = os.environ.get(env_var)
    return (Path(base) if base else Path.home() / fallback) / "ttc"


class EngineSettings(BaseModel):
    """Arguments of the in-process vLLM engine."""

    max_model_len: int = Field(2048, ge=128)
    dtype: str = "bfloat16"
    enforce_eager: bool = True
    seed: int = 0
    cpu_kv_cache_space_gib: int = Field(2, ge=1)
    cpu_use_all_cores: bool = True
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int = Field(256, ge=1)
    block_size: int | None = 32
    extra: dict[str, Any] = Field(default_factory=dict, description="more AsyncEngineArgs fields")

    def to_options(self) -> EngineOptions:
        return EngineOptions(**self.model_dump())


class BudgetDefaults(BaseModel):
    """Limits applied when a request names none."""

    max_tokens: int | None = Field(4096, ge=1)
    max_flops: float | None = Field(None, gt=0)
    deadline_s: float | None = Field(120.0, gt=0)


class Settings(BaseSettings):
    """Everything configurable about a ttc process."""

    model_config = SettingsConfigDict(
        env_prefix="TTC_", env_nested_delimiter="__", env_file=".env", extra="ignore", populate_by_name=True
    )

    backend: Literal["inprocess", "remote"] = Field(
        "inprocess", description="inprocess: vLLM in this process (CPU or one GPU); remote: vLLM servers"
    )
    model: str = Field(
        "", description="local HF model directory or hub name; empty means the embedded SmolLM2-135M-Instruct"
    )
    tokenizer: str = Field("", description="tokenizer directory or hub name; empty means the model's")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    remote_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="base URLs of vLLM OpenAI servers"
    )
    remote_model_name: str = Field("", description="served model name on the remote servers; empty: ask them")
    remote_timeout_s: float = Field(300.0, gt=0)
    remote_api_key: str = ""
    prm_url: str = Field("", description="base URL of a vLLM pooling server running a process reward model")
    prm_model: str = Field("", description="served name of the PRM; empty: ask the server")
    prm_step_tag: str = Field("<extra_0>", description="text marking the end of each step for the PRM")
    redis_url: str | None = Field(None, validation_alias=AliasChoices("TTC_REDIS_URL", "REDIS_URL", "redis_url"))
    redis_namespace: str = Field("ttc", pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: Path = Field(default_factory=lambda: _user_dir("XDG_DATA_HOME", ".local/share"))
    model_cache_dir: Path = Field(default_factory=lambda: _user_dir("XDG_CACHE_HOME", ".cache") / "models")
    budget: BudgetDefaults = Field(default_factory=BudgetDefaults)
    embedded_worker: bool = Field(True, description="ttc serve also runs jobs (the one-process default)")
    worker_concurrency: int = Field(8, ge=1, le=256, description="jobs one worker runs at once")
    job_stale_after_s: float = Field(30.0, gt=0, description="a job unclaimed this long is taken over")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    @field_validator("remote_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):  # TTC_REMOTE_URLS=http://a:8000,http://b:8000 (or a JSON list)
            if value.strip().startswith("["):
                return json.loads(value)
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @model_validator(mode="after")
    def _remote_needs_urls(self) -> Settings:
        if self.backend == "remote" and not self.remote_urls:
            raise ValueError("TTC_BACKEND=remote needs TTC_REMOTE_URLS (comma-separated vLLM server base URLs)")
        self.remote_urls = [url.rstrip("/") for url in self.remote_urls]
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("TTC_CONFIG_FILE", "ttc.toml"))
        if "TTC_CONFIG_FILE" in os.environ and not config_file.is_file():
            raise ConfigurationError(f"TTC_CONFIG_FILE points at {config_file}, which is not a file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if config_file.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def uses_embedded_model(self) -> bool:
        return not self.model
