"""Verifiers and answer checking: implementations of the kernel's verifier protocol
(``orchestrator.core.verification``), their registry (``verifiers.registry``), answer
extraction, outcome checks and meaning-based grouping."""
