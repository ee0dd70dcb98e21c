"""Service settings: environment variables (``TTC_*``) over an optional TOML file.

Precedence, highest first: constructor arguments, environment, ``.env``, the TOML file
named by ``TTC_CONFIG_FILE`` (default ``./ttc.toml`` when present), defaults.
Nested values use ``__``: ``TTC_ENGINE__MAX_MODEL_LEN=4096``, ``TTC_REMOTE__URLS=...``,
``TTC_PRM__URL=...``. ``REDIS_URL`` is accepted as well as ``TTC_REDIS_URL``.

The option groups (``EngineOptions``, ``RemoteOptions``, ``PrmOptions``) are the very
models the backends and the PRM client take, so no setting is copied field by field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from orchestrator.core.errors import ConfigurationError
from orchestrator.core.model_catalog import DEFAULT_MODEL

# Flat names of earlier versions, and what replaced them: refused with the new name, never ignored.
RENAMED_VARIABLES = {
    "TTC_REMOTE_URLS": "TTC_REMOTE__URLS",
    "TTC_REMOTE_MODEL_NAME": "TTC_REMOTE__MODEL_NAME",
    "TTC_REMOTE_TIMEOUT_S": "TTC_REMOTE__TIMEOUT_S",
    "TTC_REMOTE_API_KEY": "TTC_REMOTE__API_KEY",
    "TTC_PRM_URL": "TTC_PRM__URL",
    "TTC_PRM_MODEL": "TTC_PRM__MODEL",
    "TTC_PRM_STEP_TAG": "TTC_PRM__STEP_TAG",
}


def _user_dir(env_var: str, fallback: str) -> Path:
    base = os.environ.get(env_var)
    return (Path(base) if base else Path.home() / fallback) / "ttc"


class EngineOptions(BaseModel):
    """Arguments of the in-process vLLM engine (``TTC_ENGINE__*``); ``extra`` passes any other
    ``AsyncEngineArgs`` field."""

    model_config = ConfigDict(frozen=True)

    max_model_len: int = Field(2048, ge=128)
    dtype: str | None = Field(
        None,
        description="None chooses: on a CPU, float32 unless it has bf16 instructions (vLLM's bf16 CPU path "
        "falls back to a slow matmul without them); on a GPU, the model's own dtype",
    )
    enforce_eager: bool = Field(True, description="skips a slow compile step on CPU")
    seed: int = Field(0, description="engine-level seed: per-request seeds crash vLLM's CPU engine on large batches")
    cpu_kv_cache_space_gib: int = Field(2, ge=1, description="without it vLLM's CPU build asks for most of RAM")
    cpu_use_all_cores: bool = True
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int = Field(256, ge=1)
    block_size: int | None = Field(
        32, description="KV block size; vLLM's CPU default of 128 is longer than most steps, which then never share KV"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="more AsyncEngineArgs fields")


class RemoteOptions(BaseModel):
    """vLLM OpenAI-compatible servers for ``TTC_BACKEND=remote`` (``TTC_REMOTE__*``)."""

    urls: Annotated[list[str], NoDecode] = Field(default_factory=list, description="base URLs of the replicas")
    routing: Literal["affinity", "random"] = Field(
        "affinity",
        description="affinity: every request of a search tree to one replica (rendezvous hash), so siblings "
        "share its prefix cache; random: each request to a replica drawn at random (to measure what affinity buys)",
    )
    model_name: str = Field("", description="served model name; empty: ask the servers")
    timeout_s: float = Field(300.0, gt=0)
    api_key: str = ""

    @field_validator("urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):  # http://a:8000,http://b:8000 (or a JSON list)
            if value.strip().startswith("["):
                return json.loads(value)
            return [url.strip() for url in value.split(",") if url.strip()]
        return value

    @field_validator("urls")
    @classmethod
    def _no_trailing_slash(cls, urls: list[str]) -> list[str]:
        return [url.rstrip("/") for url in urls]


# The system prompt Qwen2.5-Math-PRM was trained with; the PRM scores best when it sees it.
PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


class PrmOptions(BaseModel):
    """A process reward model on a vLLM pooling server, for the ``prm`` verifier (``TTC_PRM__*``)."""

    url: str = Field("", description="base URL of the pooling server; empty: the prm verifier is unavailable")
    model: str = Field("", description="served name of the PRM; empty: ask the server")
    step_tag: str = Field("<extra_0>", description="text marking the end of each step for the PRM")
    system_prompt: str = Field(
        PRM_SYSTEM_PROMPT,
        description="the system turn of the PRM's input (Qwen2.5-Math-PRM's by default); empty for none, "
        "as a reward model `ttc train-reward-model` wrote reads it",
    )
    timeout_s: float = Field(120.0, gt=0)


class RewardOptions(BaseModel):
    """A reward model ``ttc train-reward-model`` wrote, served in process (``TTC_REWARD__*``)."""

    model: Path | None = Field(
        None, description="its directory; the orm and prm verifiers score through it. Unset: no in-process reward model"
    )


class BudgetDefaults(BaseModel):
    """Limits applied when a request names none."""

    max_tokens: int | None = Field(4096, ge=1)
    max_flops: float | None = Field(None, gt=0)
    deadline_s: float | None = Field(120.0, gt=0)


class RequestLimits(BaseModel):
    """Ceilings the operator sets on one request (``TTC_LIMITS__*``). A request above one gets
    400 naming it; a request that leaves a limit unset gets the default, never more than this."""

    max_tokens: int = Field(65_536, ge=1, description="the largest budget.max_tokens a request may ask for")
    deadline_s: float = Field(600.0, gt=0, description="the longest budget.deadline_s")
    max_flops: float | None = Field(None, gt=0, description="the largest budget.max_flops; None: no ceiling")
    max_parallel: int = Field(
        64, ge=1, description="sequences one request may decode at once: n, width x samples_per_beam, ..."
    )


class Settings(BaseSettings):
    """Everything configurable about a ttc process."""

    model_config = SettingsConfigDict(
        env_prefix="TTC_", env_nested_delimiter="__", env_file=".env", extra="ignore", populate_by_name=True
    )

    backend: str = Field(
        "inprocess", description="inprocess: vLLM in this process (CPU or one GPU); remote: vLLM servers"
    )
    model: str = Field(
        DEFAULT_MODEL,
        description="a catalogue name (`ttc model list`: pulled offline on CPU, its hub id on a GPU), "
        "a local HF model directory, or a hub name",
    )
    tokenizer: str = Field("", description="tokenizer directory or hub name; empty means the model's")
    engine: EngineOptions = Field(default_factory=EngineOptions)
    remote: RemoteOptions = Field(default_factory=RemoteOptions)
    prm: PrmOptions = Field(default_factory=PrmOptions)
    reward: RewardOptions = Field(default_factory=RewardOptions)
    redis_url: str | None = Field(None, validation_alias=AliasChoices("TTC_REDIS_URL", "REDIS_URL", "redis_url"))
    redis_namespace: str = Field("ttc", pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: Path = Field(default_factory=lambda: _user_dir("XDG_DATA_HOME", ".local/share"))
    model_cache_dir: Path = Field(default_factory=lambda: _user_dir("XDG_CACHE_HOME", ".cache") / "models")
    learned_verifier: Path | None = Field(
        None,
        description="the file `ttc train-verifier` writes; unset: the `learned` verifier is unavailable",
    )
    routing_policy: Path | None = Field(
        None,
        description="the policy file `auto` follows (what `ttc fit-router` writes), whatever model it was fitted "
        "on; unset: the shipped policy of the served model",
    )
    budget: BudgetDefaults = Field(default_factory=BudgetDefaults)
    limits: RequestLimits = Field(default_factory=RequestLimits)
    embedded_worker: bool = Field(True, description="ttc serve also runs jobs (the one-process default)")
    worker_concurrency: int = Field(64, ge=1, le=1024, description="jobs one worker holds at once")
    worker_streams: int = Field(
        128, ge=1, le=4096, description="sequences one worker's running jobs decode at once: fills the engine's batch"
    )
    worker_heartbeat_file: Path | None = Field(
        None, description="a worker touches this file while it can reach Redis (a container's health check reads it)"
    )
    job_stale_after_s: float = Field(30.0, gt=0, description="a job unclaimed this long is taken over")
    job_max_attempts: int = Field(3, ge=1, description="a job whose workers died this many times is failed")
    job_retention_s: float = Field(7 * 24 * 3600, gt=0, description="an ended job's record and events are kept")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _remote_needs_urls(self) -> Settings:
        if self.backend == "remote" and not self.remote.urls:
            raise ValueError("TTC_BACKEND=remote needs TTC_REMOTE__URLS (comma-separated vLLM server base URLs)")
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
        renamed = sorted(f"{old} is now {new}" for old, new in RENAMED_VARIABLES.items() if old in os.environ)
        if renamed:
            raise ConfigurationError(f"renamed settings: {'; '.join(renamed)}")
        config_file = Path(os.environ.get("TTC_CONFIG_FILE", "ttc.toml"))
        if "TTC_CONFIG_FILE" in os.environ and not config_file.is_file():
            raise ConfigurationError(f"TTC_CONFIG_FILE points at {config_file}, which is not a file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if config_file.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("model")
    @classmethod
    def _empty_is_default(cls, value: str) -> str:
        return value.strip() or DEFAULT_MODEL
