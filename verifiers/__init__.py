"""Verifiers and answer checking: one protocol for step scores, plus answer extraction."""
