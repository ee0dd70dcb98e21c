"""The ``ttc`` command line: the top layer, on top of the service, the API, the SDK and the harness.

``commands`` holds the service commands (``serve``, ``reason``, ``worker``, ``keys``,
``model pull``), ``sweeps`` the harness's (``sweep``, ``fit-router``). Every command reads
the same settings (``TTC_*`` environment, optional ``ttc.toml``) and reports errors as one
line naming what to fix, with exit status 2.
"""

from __future__ import annotations

from orchestrator.cli.commands import app
from orchestrator.cli.sweeps import fit_router, sweep, train_verifier

app.command("sweep")(sweep)
app.command("fit-router")(fit_router)
app.command("train-verifier")(train_verifier)


def main() -> None:
    """Console entry point (guarded: vLLM starts worker processes with spawn)."""
    app(prog_name="ttc")
