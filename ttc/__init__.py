"""The ttc Python SDK: ``Client`` / ``AsyncClient`` over the REST API, sharing its models.

Example::

    from ttc import Client
    with Client("http://localhost:8000") as client:
        job = client.submit("What is 7 + 5?", strategy="best_of_n", params={"n": 8})
        for event in job.events():
            print(event["type"])
        print(job.result(timeout=60).answer)
"""

from api.models import ReasonResponse, StrategyInfo, VerifierInfo
from orchestrator.core.budget import Budget, Usage
from ttc import errors
from ttc.client import AsyncClient, AsyncJob, Client, Job
from ttc.errors import TTCAPIError

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "Budget",
    "Client",
    "Job",
    "ReasonResponse",
    "StrategyInfo",
    "TTCAPIError",
    "Usage",
    "VerifierInfo",
    "errors",
]
