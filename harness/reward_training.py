"""Fine-tuning a small causal LM into a reward model, sized for a CPU.

The model reads ``format_prm_input(question, steps, tag)`` (ChatML, one step tag after each step)
and a two-way head (``[bad, good]``) reads the hidden state at every tag. Saved as a
``*ForSequenceClassification`` checkpoint, vLLM's pooling runner serves it: ``token_classify``
with the ``STEP`` pooler returns the head's softmax at each tag (``verifiers.reward``).

How it stays cheap: the first ``L - k`` decoder layers are frozen and run once, their output at
every token cached; each epoch then trains only the top ``k`` layers, the final norm and the head
on that cache. Validation holds out whole items (by
content hash) and reports, per epoch, the AUROC of the score at each example's last tag pooled
over examples and within items. Seeded; resumable per epoch (``checkpoint.pt`` in the output
directory); CUDA when torch sees one, else the CPU in bfloat16 autocast where it has bf16
instructions.
"""

from __future__ import annotations

import datetime
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.reward_data import Kind, RewardExample
from orchestrator.core.backends.inprocess import cpu_has_bf16
from orchestrator.core.errors import InvalidRequestError
from verifiers.prm import format_prm_input
from verifiers.reward import ARTIFACT_FILE, FORMAT, STEP_TAGS

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. Example: ``TrainingConfig(kind="orm", trainable_layers=2, epochs=3)``."""

    kind: Kind = "orm"
    trainable_layers: int = 2
    epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 1e-4
    max_tokens: int = 768
    validation_share: float = 0.2
    seed: int = 0


@dataclass
class Encoded:
    """One example as token ids, with the tag positions and their targets."""

    item_hash: str
    input_ids: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor


def device() -> torch.device:
    """CUDA when torch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(where: torch.device) -> torch.dtype | None:
    """bfloat16 autocast on a GPU or a CPU with bf16 instructions; none (float32) otherwise."""
    return torch.bfloat16 if where.type == "cuda" or cpu_has_bf16() else None


def choose_step_tag(tokenizer: Any) -> tuple[str, int]:
    """The first of ``STEP_TAGS`` this tokenizer holds as one token: the tag solutions never contain."""
    vocabulary = tokenizer.get_vocab()
    for tag in STEP_TAGS:
        if tag in vocabulary and tokenizer.encode(tag, add_special_tokens=False) == [vocabulary[tag]]:
            return tag, vocabulary[tag]
    raise InvalidRequestError(f"the base model's tokenizer has none of the step tags {STEP_TAGS}")


def encode(examples: Sequence[RewardExample], tokenizer: Any, tag: str, tag_id: int, max_tokens: int) -> list[Encoded]:
    """Token ids per example, cut at ``max_tokens``; tags cut off lose their targets (an example
    left with none is dropped)."""
    encoded = []
    for example in examples:
        text = format_prm_input(example.question, example.steps, tag, system=None)
        ids = tokenizer.encode(text, add_special_tokens=False)[:max_tokens]
        positions = [index for index, token in enumerate(ids) if token == tag_id]
        if not positions:
            continue
        targets = example.targets[: len(positions)]
        encoded.append(
            Encoded(
                example.item_hash,
                torch.tensor(ids),
                torch.tensor(positions),
                torch.tensor(targets, dtype=torch.float32),
            )
        )
    return encoded


def split_by_item(encoded: list[Encoded], share: float, seed: int) -> tuple[list[Encoded], list[Encoded]]:
    """(train, validation): a seeded ``share`` of the items (by content hash) held out whole."""
    hashes = sorted({row.item_hash for row in encoded})
    random.Random(seed).shuffle(hashes)
    held_out = set(hashes[: max(1, round(share * len(hashes)))]) if share > 0 else set()
    return [r for r in encoded if r.item_hash not in held_out], [r for r in encoded if r.item_hash in held_out]


def batches(rows: Sequence[Any], size: int) -> list[list[int]]:
    """Indices in batches of similar length (less padding), in a fixed order."""
    order = sorted(range(len(rows)), key=lambda index: len(rows[index].input_ids))
    return [order[start : start + size] for start in range(0, len(order), size)]


def padded(tensors: Sequence[torch.Tensor], value: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded stack and its attention mask. Right padding never changes a causal model's
    states at real tokens, so the cache and the tags read the same numbers as unpadded runs."""
    longest = max(len(tensor) for tensor in tensors)
    mask = torch.zeros(len(tensors), longest, dtype=torch.long)
    stacked = torch.full((len(tensors), longest, *tensors[0].shape[1:]), value, dtype=tensors[0].dtype)
    for row, tensor in enumerate(tensors):
        stacked[row, : len(tensor)] = tensor
        mask[row, : len(tensor)] = 1
    return stacked, mask


class RewardModel:
    """A base causal LM with a two-way head, split into a frozen bottom and a trainable top."""

    def __init__(self, base: Path, trainable_layers: int, where: torch.device) -> None:
        from transformers import AutoModelForSequenceClassification

        self.model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=2, id2label={0: "bad", 1: "good"}, dtype=torch.float32, attn_implementation="sdpa"
        ).to(where)
        self.model.config.pad_token_id = self.model.config.pad_token_id or 0
        # A zero head starts every score at 0.5 (loss ln 2): a random one meets hidden states in the
        # tens and starts with huge logits whose gradients shake the layers it is meant to tune.
        nn.init.zeros_(self.model.score.weight)
        self.layers = self.model.model.layers
        # At least one: the model's last recorded hidden state is already normed, so a cache taken
        # above the last layer would be normed twice in training and once when served.
        if not 1 <= trainable_layers <= len(self.layers):
            raise InvalidRequestError(f"trainable layers must be 1..{len(self.layers)}, not {trainable_layers}")
        self.cut = len(self.layers) - trainable_layers
        self.where = where
        self.amp = autocast_dtype(where)
        for parameter in self.model.parameters():
            parameter.requires_grad = False
        for parameter in self.trainable_parameters():
            parameter.requires_grad = True

    def trainable_parameters(self) -> list[nn.Parameter]:
        top = [*self.layers[self.cut :], self.model.model.norm, self.model.score]
        return [parameter for module in top for parameter in module.parameters()]

    @torch.inference_mode()
    def frozen_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The bottom layers' output at every token (the top's input), in bfloat16 to halve the cache."""
        with torch.autocast(self.where.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.model.model(
                input_ids=ids.to(self.where), attention_mask=mask.to(self.where), output_hidden_states=True
            )
        return out.hidden_states[self.cut].to("cpu", torch.bfloat16)

    def logits_at_tags(
        self, states: torch.Tensor, mask: torch.Tensor, positions: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """The head's ``[bad, good]`` logits at each example's tags, from the cached bottom states."""
        inner = self.model.model
        with torch.autocast(self.where.type, dtype=self.amp, enabled=self.amp is not None):
            inner.layers = self.layers[self.cut :]  # the top alone, fed the cache as its embeddings
            try:
                hidden = inner(inputs_embeds=states.to(self.where, torch.float32), attention_mask=mask.to(self.where))
            finally:
                inner.layers = self.layers
            logits = self.model.score(hidden.last_hidden_state).float()
        return [logits[row, where.to(self.where)] for row, where in enumerate(positions)]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``[bad, good]`` logits against P(good) targets (hard 0/1 or Math-Shepherd's soft share)."""
    log_probabilities = torch.log_softmax(logits, dim=-1)
    return -(targets * log_probabilities[:, 1] + (1 - targets) * log_probabilities[:, 0]).mean()


def auroc(labels: Sequence[float], scores: Sequence[float]) -> float | None:
    """P(a right example scores above a wrong one), ties half; None without both kinds.

    Example: ``auroc([1, 0, 1], [0.9, 0.2, 0.4]) == 1.0``.
    """
    from sklearn.metrics import roc_auc_score

    hard = [label >= 0.5 for label in labels]
    return float(roc_auc_score(hard, scores)) if len(set(hard)) == 2 else None


def validation_report(rows: list[Encoded], scores: list[float]) -> dict[str, float | None]:
    """AUROC of the last tag's score against its target: pooled, and the mean within items."""
    labels = [float(row.targets[-1]) for row in rows]
    by_item: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for row, label, score in zip(rows, labels, scores, strict=True):
        by_item[row.item_hash][0].append(label)
        by_item[row.item_hash][1].append(score)
    within = [
        value for item_labels, item_scores in by_item.values() if (value := auroc(item_labels, item_scores)) is not None
    ]
    return {"pooled_auroc": auroc(labels, scores), "within_item_auroc": float(np.mean(within)) if within else None}


class Trainer:
    """Encodes, caches the frozen states, trains epoch by epoch, and saves the served checkpoint."""

    def __init__(self, base: Path, out: Path, config: TrainingConfig, progress: Progress | None = None) -> None:
        from transformers import AutoTokenizer

        self.base, self.out, self.config = base, out, config
        self.progress = progress or (lambda phase, done, total: None)
        torch.manual_seed(config.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.tag, self.tag_id = choose_step_tag(self.tokenizer)
        self.rm = RewardModel(base, config.trainable_layers, device())
        # One rate for the top layers and the head: Adam moves every head weight by about the rate,
        # and the head sums hundreds of normed features, so a faster head swings the logits by whole
        # units a step.
        self.optimizer = torch.optim.AdamW(self.rm.trainable_parameters(), lr=config.learning_rate, weight_decay=0.0)

    def cache(self, rows: list[Encoded], phase: str) -> list[torch.Tensor]:
        """Each row's frozen states, one batch at a time (the one expensive pass over the data)."""
        states: list[torch.Tensor | None] = [None] * len(rows)
        groups = batches(rows, self.config.batch_size)
        for done, group in enumerate(groups, 1):
            ids, mask = padded([rows[index].input_ids for index in group], self.tokenizer.pad_token_id or 0)
            hidden = self.rm.frozen_states(ids, mask)
            for slot, index in enumerate(group):
                states[index] = hidden[slot, : len(rows[index].input_ids)].clone()
            self.progress(phase, done, len(groups))
        return [state for state in states if state is not None]

    def scores(self, rows: list[Encoded], states: list[torch.Tensor]) -> list[float]:
        """P(good) at each row's last tag."""
        found: list[float] = [0.0] * len(rows)
        self.rm.model.eval()
        with torch.no_grad():
            for group in batches(rows, self.config.batch_size):
                stacked, mask = padded([states[index] for index in group])
                logits = self.rm.logits_at_tags(stacked, mask, [rows[index].positions for index in group])
                for index, row_logits in zip(group, logits, strict=True):
                    found[index] = float(torch.softmax(row_logits[-1], dim=-1)[1])
        return found

    def epoch(self, rows: list[Encoded], states: list[torch.Tensor], number: int) -> float:
        """One pass over the training rows in a seeded shuffled batch order; the mean loss."""
        self.rm.model.train()
        groups = batches(rows, self.config.batch_size)
        random.Random(self.config.seed + number).shuffle(groups)
        losses = []
        for done, group in enumerate(groups, 1):
            stacked, mask = padded([states[index] for index in group])
            logits = self.rm.logits_at_tags(stacked, mask, [rows[index].positions for index in group])
            loss = soft_cross_entropy(
                torch.cat(logits), torch.cat([rows[index].targets for index in group]).to(self.rm.where)
            )
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.rm.trainable_parameters(), 1.0)
            self.optimizer.step()
            self.schedule.step()
            losses.append(float(loss.detach()))
            self.progress(f"epoch {number}", done, len(groups))
        return float(np.mean(losses))

    def train(self, examples: list[RewardExample], meta: dict[str, Any]) -> dict[str, Any]:
        """Train (resuming from the last finished epoch), save the checkpoint, return its metadata."""
        started = time.monotonic()
        encoded = encode(examples, self.tokenizer, self.tag, self.tag_id, self.config.max_tokens)
        training, validation = split_by_item(encoded, self.config.validation_share, self.config.seed)
        if not training or {float(t) >= 0.5 for r in training for t in r.targets} != {True, False}:
            raise InvalidRequestError("the training examples are all good or all bad: nothing to learn from them")
        # The rate falls linearly to zero over the run: near the end, when the loss is small, Adam's
        # steps of a whole rate would otherwise undo what was learned.
        total_steps = self.config.epochs * len(batches(training, self.config.batch_size))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: max(0.0, 1 - step / total_steps))
        history = self.resume()
        train_states = self.cache(training, "caching the frozen layers (training items)")
        valid_states = self.cache(validation, "caching the frozen layers (validation items)") if validation else []
        for number in range(len(history) + 1, self.config.epochs + 1):
            loss = self.epoch(training, train_states, number)
            report = validation_report(validation, self.scores(validation, valid_states)) if validation else {}
            history.append({"epoch": number, "train_loss": loss, **report})
            self.checkpoint(history)
        meta |= self.metadata(training, validation, history, time.monotonic() - started)
        self.save(meta)
        return meta

    def metadata(self, training: list[Encoded], validation: list[Encoded], history: list[dict], seconds: float) -> dict:
        return {
            "format": FORMAT,
            "kind": self.config.kind,
            "step_tag": self.tag,
            "step_tag_id": self.tag_id,
            "config": asdict(self.config),
            "examples": {"training": len(training), "validation": len(validation)},
            "item_hashes": sorted({row.item_hash for row in training + validation}),
            "history": history,
            "validation": history[-1] if history else {},
            "train_seconds": round(seconds, 1),
            "device": str(self.rm.where),
            "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }

    def resume(self) -> list[dict]:
        """The finished epochs' history, with the trainable weights and optimizer restored."""
        path = self.out / "checkpoint.pt"
        if not path.exists():
            return []
        saved = torch.load(path, map_location=self.rm.where, weights_only=False)
        if saved["config"] != asdict(self.config):
            raise InvalidRequestError(f"{path} was written with other settings; remove it or use another --out")
        for parameter, value in zip(self.rm.trainable_parameters(), saved["weights"], strict=True):
            parameter.data.copy_(value)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        return saved["history"]

    def checkpoint(self, history: list[dict]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        weights = [parameter.detach().clone() for parameter in self.rm.trainable_parameters()]
        state = {
            "config": asdict(self.config),
            "history": history,
            "weights": weights,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
        }
        torch.save(state, self.out / "checkpoint.pt.tmp")
        (self.out / "checkpoint.pt.tmp").replace(self.out / "checkpoint.pt")

    def save(self, meta: dict[str, Any]) -> None:
        """The served checkpoint (bfloat16 safetensors, tokenizer) and ``ttc-reward.json`` beside it."""
        self.rm.model.to(torch.bfloat16).save_pretrained(self.out)
        self.tokenizer.save_pretrained(self.out)
        (self.out / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self.rm.model.to(torch.float32)
