"""API keys and their token quotas: the records (stored by hash, never in plain text) and the
tokens each key has spent or reserved."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

from pydantic import BaseModel, Field

from orchestrator.core.store.records import RecordStore


def hash_api_key(plaintext: str) -> str:
    """What the store keeps instead of the key."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


class ApiKey(BaseModel):
    """An API key's stored record (its hash is the Redis field name)."""

    id: str = Field(default_factory=lambda: f"key-{uuid.uuid4().hex[:12]}")
    name: str
    quota_tokens: int | None = Field(None, ge=1, description="compute tokens the key may spend; None: unlimited")
    created_at: float = Field(default_factory=time.time)


class ApiKeyStore(RecordStore):
    """API keys and what they spent."""

    async def create_api_key(self, name: str, quota_tokens: int | None = None) -> tuple[str, ApiKey]:
        """A new API key: returns the plaintext (shown once) and its stored record."""
        plaintext = f"ttc-{secrets.token_urlsafe(32)}"
        record = ApiKey(name=name, quota_tokens=quota_tokens)
        await self.redis.hset(self.keys.api_keys(), hash_api_key(plaintext), record.model_dump_json())
        return plaintext, record

    async def has_api_keys(self) -> bool:
        return bool(await self.redis.hlen(self.keys.api_keys()))

    async def find_api_key(self, plaintext: str) -> ApiKey | None:
        raw = await self.redis.hget(self.keys.api_keys(), hash_api_key(plaintext))
        return ApiKey.model_validate_json(raw) if raw else None

    async def list_api_keys(self) -> list[tuple[ApiKey, int]]:
        """Every key with the tokens it has spent."""
        records = [ApiKey.model_validate_json(raw) for raw in (await self.redis.hgetall(self.keys.api_keys())).values()]
        used = await self.redis.hgetall(self.keys.api_key_usage())
        return [(record, int(used.get(record.id, 0))) for record in records]

    async def revoke_api_key(self, key_id: str) -> bool:
        for key_hash, raw in (await self.redis.hgetall(self.keys.api_keys())).items():
            if ApiKey.model_validate_json(raw).id == key_id:
                await self.redis.hdel(self.keys.api_keys(), key_hash)
                return True
        return False

    async def api_key_tokens_used(self, key_id: str) -> int:
        """Compute tokens the key's finished jobs spent."""
        return int(await self.redis.hget(self.keys.api_key_usage(), key_id) or 0)

    async def api_key_tokens_committed(self, key_id: str) -> int:
        """Tokens spent plus tokens reserved by the key's unfinished jobs: what its quota is checked against."""
        used, reserved = (
            await self.redis.hget(self.keys.api_key_usage(), key_id),
            await self.redis.hget(self.keys.api_key_reserved(), key_id),
        )
        return int(used or 0) + int(reserved or 0)
