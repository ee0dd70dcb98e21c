"""The reward model's data and loss: what it learns from, and how it is scored while training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.reward_data import balanced, outcome_examples, outcome_steps, read_signal_items
from harness.reward_training import Encoded, auroc, padded, soft_cross_entropy, split_by_item, validation_report
from orchestrator.core.errors import InvalidRequestError


def sample(correct: bool, text: str = "1 + 1 = 2") -> dict:
    return {"correct": correct, "text": text}


def test_balanced_takes_right_and_wrong_in_turn() -> None:
    samples = [sample(True, "a"), sample(True, "b"), sample(True, "c"), sample(False, "d")]
    assert [s["text"] for s in balanced(samples, 2)] == ["a", "d"]
    assert [s["text"] for s in balanced(samples, 3)] == ["a", "d", "b"]
    assert balanced(samples, None) == samples


def test_an_outcome_example_is_the_solution_as_one_step() -> None:
    assert outcome_steps("3 + 4 = 7\n\n\n\n  So 7.  ") == ("3 + 4 = 7\n\nSo 7.",)
    item = {"id": "a-1", "question": "3 + 4?", "samples": [sample(True), sample(False)]}
    examples = outcome_examples([item])
    assert [e.targets for e in examples] == [(1.0,), (0.0,)]
    assert examples[0].item_hash == examples[1].item_hash


def test_test_split_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k-test.jsonl"
    path.write_text(json.dumps({"id": "x", "question": "q", "samples": []}) + "\n")
    with pytest.raises(InvalidRequestError, match="never trains on test items"):
        read_signal_items([path])


def test_soft_cross_entropy_is_lowest_at_the_target() -> None:
    target = torch.tensor([0.75])
    losses = {p: float(soft_cross_entropy(torch.log(torch.tensor([[1 - p, p]])), target)) for p in (0.5, 0.75, 0.95)}
    assert losses[0.75] < losses[0.5] and losses[0.75] < losses[0.95]


def test_right_padding_keeps_every_row_and_masks_the_rest() -> None:
    stacked, mask = padded([torch.tensor([1, 2, 3]), torch.tensor([4])], value=0)
    assert stacked.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def encoded(item: str, target: float) -> Encoded:
    return Encoded(item, torch.tensor([1, 2]), torch.tensor([1]), torch.tensor([target]))


def test_validation_holds_out_whole_items() -> None:
    rows = [encoded(f"item{i % 10}", float(i % 2)) for i in range(40)]
    training, validation = split_by_item(rows, 0.2, seed=0)
    assert {r.item_hash for r in training}.isdisjoint({r.item_hash for r in validation})
    assert len({r.item_hash for r in validation}) == 2


def test_validation_report_pools_and_averages_within_items() -> None:
    rows = [encoded("a", 1.0), encoded("a", 0.0), encoded("b", 1.0), encoded("b", 0.0)]
    report = validation_report(rows, [0.9, 0.5, 0.3, 0.2])  # b's right one is below a's wrong one
    assert report == {"pooled_auroc": 0.75, "within_item_auroc": 1.0}
    assert auroc([1, 1], [0.2, 0.3]) is None


def test_an_artifact_of_another_format_or_model_is_refused(tmp_path: Path) -> None:
    from orchestrator.core.errors import ConfigurationError
    from verifiers.reward import ARTIFACT_FILE, FORMAT, load_reward_meta

    with pytest.raises(ConfigurationError, match="is missing"):
        load_reward_meta(tmp_path)
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps({"format": "ttc-reward-model/0"}))
    with pytest.raises(ConfigurationError, match="retrain it"):
        load_reward_meta(tmp_path)
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps({"format": FORMAT, "judged_model": "smollm2-135m"}))
    assert load_reward_meta(tmp_path, "smollm2-135m")["format"] == FORMAT
    with pytest.raises(ConfigurationError, match="train one on this model's samples"):
        load_reward_meta(tmp_path, "qwen2.5-coder-0.5b")


def test_the_command_names_what_to_fix(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from cli.sweeps import train_reward_model

    app = typer.Typer()
    app.command()(train_reward_model)  # the one command: invoked without its name
    test_file = tmp_path / "gsm8k-test.jsonl"
    test_file.write_text(json.dumps({"id": "x", "question": "q", "samples": []}) + "\n")
    runner = CliRunner()
    wrong_kind = runner.invoke(app, ["--samples", str(test_file), "--out", str(tmp_path / "m"), "--kind", "xrm"])
    assert wrong_kind.exit_code == 2 and "the kind is orm or prm" in wrong_kind.output
    on_test = runner.invoke(app, ["--samples", str(test_file), "--out", str(tmp_path / "m")])
    assert on_test.exit_code == 2 and "never trains on test items" in on_test.output


def test_folds_split_items_by_content_and_leave_one_out() -> None:
    from harness.reward_data import fold_of, outside_fold, parse_fold

    items = [{"id": f"i{n}", "question": f"What is {n} + 1?"} for n in range(40)]
    kept = [outside_fold(items, k, 2) for k in (0, 1)]
    assert {i["id"] for i in kept[0]}.isdisjoint({i["id"] for i in kept[1]})
    assert len(kept[0]) + len(kept[1]) == 40 and kept[0] and kept[1]
    twin = [{"id": "other-id", "question": "what is 3  + 1?"}]  # the same question under another id
    assert (outside_fold(twin, 0, 2) == []) == ("i3" not in {i["id"] for i in kept[0]})
    assert parse_fold("1/2") == (1, 2) and fold_of("0" * 11 + "f", 2) == 1
    with pytest.raises(InvalidRequestError, match="K must be"):
        parse_fold("2/2")


def test_step_labels_come_from_finishing_each_prefix() -> None:
    from harness.datasets import Problem
    from harness.reward_data import solution_steps
    from harness.reward_rollouts import prefix_texts, share_right

    steps = solution_steps("3 x 4 = 12\n\n12 + 1 = 13\n\nThe answer is 13.")
    assert steps == ("3 x 4 = 12", "12 + 1 = 13", "The answer is 13.")
    assert prefix_texts(steps) == ["3 x 4 = 12\n\n", "3 x 4 = 12\n\n12 + 1 = 13\n\n"]  # the whole is not a prefix
    problem = Problem("What is 3 x 4 + 1?", "13", id="p")
    finishes = ["12 + 1 = 13\n\nThe answer is 13.", "12 + 2 = 14\n\nThe answer is 14.", "The answer is 13."]
    assert share_right(problem, prefix_texts(steps)[0], finishes) == pytest.approx(2 / 3)
    assert share_right(problem, prefix_texts(steps)[0], []) == 0.0
