"""The Kinetics-style cost model."""

from __future__ import annotations

import pytest

from orchestrator.core.costmodel import ARITHMETIC_INTENSITY, ModelShape, generation_cost

SMOLLM2_CONFIG = {
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


def test_shape_and_parameter_count_of_smollm2() -> None:
    shape = ModelShape.from_hf_config(SMOLLM2_CONFIG)
    assert (shape.layers, shape.query_heads, shape.kv_heads, shape.head_dim) == (30, 9, 3, 64)
    assert shape.parameters == pytest.approx(134.5e6, rel=0.01)  # "135M"
    assert shape.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2


def test_head_dim_defaults_to_hidden_over_heads() -> None:
    config = {k: v for k, v in SMOLLM2_CONFIG.items() if k not in ("head_dim", "num_key_value_heads")}
    shape = ModelShape.from_hf_config(config)
    assert shape.head_dim == 64 and shape.kv_heads == 9


def test_decode_cost_matches_the_closed_form() -> None:
    shape = ModelShape(parameters=1000, layers=2, query_heads=4, kv_heads=2, head_dim=8)
    prompt, length, n = 100, 10, 3
    cost = generation_cost(shape, prompt, cached_prompt_tokens=prompt, completion_lengths=[length] * n)
    expected_flops = n * (2 * 1000 * length + 2 * 2 * 4 * 8 * (2 * prompt + length) * length)
    expected_bytes = shape.kv_bytes_per_token * (prompt + n * length / 2) * length
    assert cost.flops == pytest.approx(expected_flops)
    assert cost.kv_bytes == pytest.approx(expected_bytes)
    assert cost.eflops == pytest.approx(expected_flops + ARITHMETIC_INTENSITY * expected_bytes)


def test_cached_prompt_tokens_cost_no_prefill() -> None:
    shape = ModelShape.from_hf_config(SMOLLM2_CONFIG)
    cold = generation_cost(shape, 200, 0, [16])
    warm = generation_cost(shape, 200, 192, [16])
    decode_only = generation_cost(shape, 200, 200, [16])
    assert cold.flops > warm.flops > decode_only.flops
    assert cold.kv_bytes == warm.kv_bytes  # the same KV is read while decoding


def test_wider_sampling_shares_the_prefix_read() -> None:
    shape = ModelShape.from_hf_config(SMOLLM2_CONFIG)
    one = generation_cost(shape, 500, 500, [32])
    eight = generation_cost(shape, 500, 500, [32] * 8)
    assert eight.kv_bytes < 8 * one.kv_bytes
