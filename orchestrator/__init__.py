"""The kernel: budgets and their meter, the session strategies act through, the engine
backends, rendering, the store, settings and errors. It imports nothing above it (the
verifiers, strategies, service, API and command line all stand on it)."""
