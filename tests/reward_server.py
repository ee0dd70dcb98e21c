"""The reward model the tests share: the test model fine-tuned on a dozen labelled sums, then served
by a real ``vllm serve --runner pooling`` as a fleet runs a PRM.

Both steps run in the background from the moment the tests are collected (``tests.early``): the
training in a process of its own (``python -m tests.reward_server DIR``; torch in a thread of the
test process hangs at that thread's exit), then the server. They overlap the unit tests, and the
fixtures (``reward_dir``, ``reward_server``) only wait for them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.datasets import content_hash
from harness.reward_data import RewardExample, outcome_steps
from harness.reward_training import Trainer, TrainingConfig
from orchestrator.core.model_catalog import ensure_model
from orchestrator.core.settings import Settings
from tests.servers import VllmServer, start_vllm
from verifiers.reward import load_reward_meta

EXACT = "float32"  # the reward model's dtype on both engines, so "the same scores" can be checked tightly
PAIRS = [(2, 3), (4, 5), (7, 6), (9, 8), (12, 3), (15, 7)]


def labelled_solutions() -> list[tuple[str, str, float]]:
    """(question, solution, label): each sum solved right, and wrong by one."""
    rows = []
    for a, b in PAIRS:
        question = f"What is {a} + {b}?"
        rows.append((question, f"{a} + {b} = {a + b}\n\nThe answer is {a + b}.", 1.0))
        rows.append((question, f"{a} + {b} = {a + b + 1}\n\nThe answer is {a + b + 1}.", 0.0))
    return rows


def train(model_dir: Path, out: Path) -> dict[str, Any]:
    """Fine-tune the test model into an outcome reward model at ``out``; returns its metadata."""
    examples = [
        RewardExample(f"q{i // 2}", content_hash(q), q, outcome_steps(text), (label,))
        for i, (q, text, label) in enumerate(labelled_solutions())
    ]
    config = TrainingConfig(trainable_layers=2, epochs=30, batch_size=2, learning_rate=1e-4, validation_share=0.0)
    return Trainer(model_dir, out, config).train(examples, {"judged_model": "smollm2-135m"})


@dataclass
class RewardModel:
    """The reward model being trained (and, if ``serve``, then served) in a background thread."""

    root: Path
    model: str
    serve: bool
    meta: dict[str, Any] | None = None
    server: VllmServer | None = None
    error: BaseException | None = None
    _thread: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._train_then_serve, name="reward-model", daemon=True)
        self._thread.start()

    @property
    def directory(self) -> Path:
        return self.root / "orm"

    def _train_then_serve(self) -> None:
        try:
            log = self.root / "training.log"
            with log.open("w") as out:
                command = [sys.executable, "-m", "tests.reward_server", str(self.directory), self.model]
                done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                ended = log.read_text()[-3000:]
                raise RuntimeError(f"training the test reward model failed; the end of {log}:\n{ended}")
            self.meta = load_reward_meta(self.directory)
            if self.serve:
                self.server = serve_reward_model(self.directory, self.root / "server.log")
        except BaseException as error:  # handed to whoever waits for it
            self.error = error

    def trained(self) -> dict[str, Any]:
        """The training's metadata, once it is done (re-raising what went wrong)."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.meta is not None
        return self.meta

    def ready(self, timeout_s: float = 300) -> str:
        """The pooling server's URL, once it answers."""
        self.trained()
        if self.server is None:  # started without serving: serve now
            self.server = serve_reward_model(self.directory, self.root / "server.log")
        return self.server.ready(timeout_s)

    def stop(self) -> None:
        self._thread.join()
        if self.server is not None:
            self.server.stop()


def serve_reward_model(directory: Path, log_path: Path) -> VllmServer:
    """``vllm serve --runner pooling`` on the reward model: one ``[p_bad, p_good]`` pair per step tag,
    read by the ``prm`` and ``orm`` verifiers."""
    tag_id = load_reward_meta(directory)["step_tag_id"]
    pooler = {"task": "token_classify", "tok_pooling_type": "STEP", "step_tag_id": tag_id}
    return start_vllm(directory, log_path, ["--runner", "pooling", "--pooler-config", json.dumps(pooler)], EXACT)


if __name__ == "__main__":  # the training, in a process of its own: DIR MODEL
    train(ensure_model(Settings().model_cache_dir, sys.argv[2]), Path(sys.argv[1]))
