"""The kernel: what strategies and verifiers build on.

Backends (the only code that knows vLLM), the budget meter and cost model, prompt
rendering, the store (every Redis key), settings, the error hierarchy, the verifier
protocol and the per-request ``Session``. Nothing here imports a strategy, a verifier
implementation, the service or the API.
"""
