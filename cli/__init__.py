"""The ``ttc`` command line: the top layer, on top of the service, the API, the SDK and the harness.

``commands`` holds the service commands (``serve``, ``reason``, ``strategies``, ``worker``,
``keys``, ``model pull``), ``client`` the commands against a running service (``reason
--server``, ``jobs``), ``sweeps`` the harness's (``sweep``, ``fit-router``). Every command
reads the same settings (``TTC_*`` environment, optional ``ttc.toml``) and reports errors as
one line: exit status 2 for a mistake in the command, 1 for a failure.
"""

from __future__ import annotations

import sys

SERVER_EXTRA = "pip install 'ttc-orchestrator[server]'"


def main() -> None:
    """Console entry point (guarded: vLLM starts worker processes with spawn). The base install is
    the SDK alone; without the service's packages the command says what to install."""
    try:
        from cli.commands import app
        from cli.sweeps import (
            fit_router,
            sweep,
            sweep_dump,
            sweep_load,
            train_reward_model,
            train_verifier,
        )
    except ModuleNotFoundError as missing:
        sys.exit(f"error: the ttc command needs the service's packages ({missing.name} is missing): {SERVER_EXTRA}")
    app.command("sweep")(sweep)
    app.command("fit-router")(fit_router)
    app.command("sweep-dump")(sweep_dump)
    app.command("sweep-load")(sweep_load)
    app.command("train-verifier")(train_verifier)
    app.command("train-reward-model")(train_reward_model)
    app(prog_name="ttc")
