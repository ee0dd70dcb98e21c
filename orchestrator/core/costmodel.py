"""Kinetics-style cost of a generation: compute FLOPs and KV-cache memory traffic.

Decoding small batches is bound by reading the KV cache, not by arithmetic, so token
counts undercount what long or wide searches cost. Following the Kinetics cost model:

* compute  = 2·P per processed token + attention 4·L·H_q·d per (query, key) pair;
* memory   = bytes of KV read at every decode step: the prompt's KV once per step
  (shared by the n samples of a request) plus each sample's own growing tail;
* eFLOPs   = compute + E · memory, with E = 562.5 FLOPs per byte (the hardware balance
  Kinetics uses), so a single number can bound a request.

Parameter reads are left out: they are amortised over all requests in the engine's batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import ModelNotFoundError

ARITHMETIC_INTENSITY = 562.5  # FLOPs per byte (Kinetics' E)


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers the cost model needs."""

    parameters: int
    layers: int
    query_heads: int
    kv_heads: int
    head_dim: int
    kv_bytes_per_element: int = 2  # bf16 / fp16 KV cache

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of one token across all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.kv_bytes_per_element

    @classmethod
    def from_hf_config(cls, config: dict) -> ModelShape:
        """Read the shape from a Hugging Face ``config.json`` dictionary (Llama/Qwen/Mistral style)."""
        try:
            hidden = int(config["hidden_size"])
            layers = int(config["num_hidden_layers"])
            query_heads = int(config["num_attention_heads"])
        except KeyError as missing:
            raise ModelNotFoundError(f"model config lacks {missing}; cannot estimate its cost") from None
        kv_heads = int(config.get("num_key_value_heads") or query_heads)
        head_dim = int(config.get("head_dim") or hidden // query_heads)
        return cls(
            parameters=_count_parameters(config, hidden, layers, query_heads, kv_heads, head_dim),
            layers=layers,
            query_heads=query_heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
        )


def load_model_shape(name_or_path: str | Path, setting: str = "TTC_MODEL") -> ModelShape:
    """The shape of a local model directory or hub model, from its config."""
    local = Path(name_or_path) / "config.json"
    if local.exists():
        return ModelShape.from_hf_config(json.loads(local.read_text()))
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(
            f"cannot read the model config of {str(name_or_path)!r} ({error}); set {setting} to a local "
            "model directory (config and tokenizer files are enough) or a reachable hub name"
        ) from None
    return ModelShape.from_hf_config(config.to_dict())


def _count_parameters(config: dict, hidden: int, layers: int, q_heads: int, kv_heads: int, head_dim: int) -> int:
    """Dense decoder parameter count: embeddings, attention projections and a gated MLP."""
    vocab = int(config.get("vocab_size", 0))
    intermediate = int(config.get("intermediate_size", 4 * hidden))
    attention = hidden * head_dim * (2 * q_heads + 2 * kv_heads)  # q, o and k, v projections
    mlp = 3 * hidden * intermediate  # gate, up, down
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return layers * (attention + mlp) + embeddings


@dataclass(frozen=True)
class GenerationCost:
    """Estimated cost of one request (a prompt and its n samples)."""

    flops: float
    kv_bytes: float

    @property
    def eflops(self) -> float:
        return self.flops + ARITHMETIC_INTENSITY * self.kv_bytes


def generation_cost(
    shape: ModelShape, prompt_tokens: int, cached_prompt_tokens: int, completion_lengths: list[int]
) -> GenerationCost:
    """Cost of prefilling the uncached prompt and decoding the samples.

    Example: ``generation_cost(shape, 100, 80, [32, 32])`` — 20 prompt tokens to
    prefill, two samples of 32 tokens decoded over a 100-token prefix.
    """
    attention_per_pair = 4 * shape.layers * shape.query_heads * shape.head_dim
    prompt, fresh = prompt_tokens, max(0, prompt_tokens - cached_prompt_tokens)
    # Prefill: each fresh token at position p attends to p keys; Σ p over the fresh tail.
    prefill_pairs = fresh * (2 * prompt - fresh) / 2
    flops = 2 * shape.parameters * fresh + attention_per_pair * prefill_pairs
    kv_bytes = 0.0
    for length in completion_lengths:
        decode_pairs = prompt * length + length * length / 2
        flops += 2 * shape.parameters * length + attention_per_pair * decode_pairs
        kv_bytes += shape.kv_bytes_per_token * length * length / 2  # the sample's own tail
    steps = max(completion_lengths, default=0)
    kv_bytes += shape.kv_bytes_per_token * prompt * steps  # shared prefix, read once per step
    return GenerationCost(flops=flops, kv_bytes=kv_bytes)
