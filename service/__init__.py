"""The service: the runtime a process builds once (backend, store, verifiers, policy), the job
queue and its workers, sleep-time contexts, and how a job's outcome is decided. It stands on the
strategies; the API and the command line stand on it."""
