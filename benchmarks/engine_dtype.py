"""The in-process engine's decoding speed in bfloat16 and in float32, as a ratio in one run.

vLLM's CPU build runs bfloat16 fast only where the CPU has bf16 instructions (AVX-512 BF16
or AMX); elsewhere it falls back to a slow matmul. ttc therefore chooses the dtype from the
CPU's flags (``engine_dtype``). This benchmark checks that choice on the machine it runs on:
both engines are started once, then the same greedy batch is decoded on each, alternating
which goes first, and completion tokens per second are compared.

    .venv/bin/python benchmarks/engine_dtype.py [--sequences 32] [--max-tokens 128] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import anyio

RESULTS_DIR = Path(__file__).parent / "results"
DTYPES = ("bfloat16", "float32")


async def decode(backend, prompts: list[list[int]], max_tokens: int) -> int:
    from orchestrator.core.backends.base import SamplingSettings

    results = await backend.generate(prompts, SamplingSettings(temperature=0.0, max_tokens=max_tokens))
    return sum(r.completion_tokens for r in results)


async def main(args: argparse.Namespace) -> dict:
    from orchestrator.core.backends.inprocess import InProcessBackend, cpu_has_bf16, engine_dtype
    from orchestrator.core.model_catalog import ensure_model
    from orchestrator.core.settings import EngineOptions, Settings

    model = str(ensure_model(Settings().model_cache_dir, Settings().model))
    backends = {}
    try:
        for dtype in DTYPES:
            backends[dtype] = await InProcessBackend.start(model, EngineOptions(dtype=dtype, cpu_kv_cache_space_gib=1))
        renderer = backends[DTYPES[0]].renderer
        questions = [f"Tell a long story about the number {17 * i + 3}." for i in range(args.sequences)]
        prompts = [renderer.encode(renderer.render_question(q)) for q in questions]
        for backend in backends.values():
            await decode(backend, prompts, 8)  # warm-up: first-call allocations, the prefix cache
        rates: dict[str, list[float]] = {dtype: [] for dtype in DTYPES}
        for round_index in range(args.rounds):
            order = DTYPES if round_index % 2 == 0 else DTYPES[::-1]
            for dtype in order:
                started = time.perf_counter()
                tokens = await decode(backends[dtype], prompts, args.max_tokens)
                rates[dtype].append(tokens / (time.perf_counter() - started))
                print(f"round {round_index + 1}/{args.rounds} {dtype:>8}: {rates[dtype][-1]:.1f} tok/s ({tokens} tok)")
    finally:
        for backend in backends.values():
            await backend.aclose()
    ratios = [f / b for f, b in zip(rates["float32"], rates["bfloat16"], strict=True)]
    return {
        "benchmark": "engine_dtype",
        "batch": {"sequences": args.sequences, "max_tokens": args.max_tokens, "temperature": 0.0},
        "rounds": args.rounds,
        "cpu_has_bf16": cpu_has_bf16(),
        "chosen_dtype": engine_dtype(None),
        "tokens_per_s": rates,
        "median_tokens_per_s": {dtype: statistics.median(rates[dtype]) for dtype in DTYPES},
        "float32_over_bfloat16": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":  # vLLM starts its engine core with spawn
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    report = anyio.run(main, parser.parse_args())
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "engine_dtype.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("cpu_has_bf16", "chosen_dtype", "median_tokens_per_s")}, indent=2))
    print(json.dumps({"float32_over_bfloat16": report["float32_over_bfloat16"]}))
    print(f"saved {out}")
