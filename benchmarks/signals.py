"""Every signal measured on the same samples: which tells right from wrong, and what selecting by it buys.

Reads what ``benchmarks/signal_samples.py`` stored (N graded samples per item, with their
confidence measures and per-token confidence), and for each dataset's test split reports:

- pass@1 and pass@N: how much there is to select from;
- AUROC of each signal at separating correct from incorrect samples, with a bootstrap interval
  over items;
- accuracy at N = 4, 8, 16 (the first N samples of each item) of majority, calculator-weighted
  vote, DeepConf offline (keep the most confident 10% / 90% by lowest group confidence, then a
  confidence-weighted vote), learned-weighted vote, and oracle pass@N, with 95% bootstrap intervals;
- DeepConf online, replayed on the stored token confidences: a 4-trace warm-up sets the bar, and
  each later trace is cut where a 16-token window first falls below it (the tokens it would
  have decoded by then are counted). Sampling stops at 95% confidence-weighted consensus. It
  is compared with majority@16 for accuracy and tokens.

With ``--learned FILE`` the learned verifier (trained on dev items only) is scored too; the run
refuses if it was trained on any test item. Writes ``docs/signals/`` (README tables, ROC and
accuracy plots) and ``benchmarks/results/signals.json``.

    .venv/bin/python benchmarks/signals.py --learned runs/learned-verifier.joblib --reward orm-q05
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).parent / "results" / "signals"
DOCS = ROOT / "docs" / "signals"
RESULTS = Path(__file__).parent / "results" / "signals.json"
DATASETS = ["arithmetic", "gsm8k"]
MEASURES = ["mean", "lowest_group", "bottom_10", "tail", "self_certainty", "answer_logprob"]
SIZES = [4, 8, 16]
BOOTSTRAP = 2000
WINDOW, WARMUP, CONSENSUS = 16, 4, 0.95


def load(dataset: str, split: str, rewards: Sequence[str] = ()) -> list[dict]:
    """The stored items, with ``self_judge`` on each sample where ``signal_self_judge.py`` scored it
    and the scores of each reward model named in ``rewards`` (``signal_reward.py``'s labels)."""
    slug = dataset.replace(":", "_")
    items = [json.loads(line) for line in (SAMPLES / f"{slug}-{split}.jsonl").read_text().splitlines()]
    judged = SAMPLES / f"{slug}-{split}.self_judge.jsonl"
    if judged.exists():
        scores = {record["id"]: record["self_judge"] for record in map(json.loads, judged.read_text().splitlines())}
        if set(scores) >= {item["id"] for item in items}:  # all or none: a partial run would skew the AUROC
            for item in items:
                for sample, score in zip(item["samples"], scores[item["id"]], strict=True):
                    sample["self_judge"] = score
    for label in rewards:
        add_reward_scores(items, SAMPLES / f"{slug}-{split}.reward-{label}.jsonl", label)
    return items


def add_reward_scores(items: list[dict], path: Path, label: str) -> None:
    """One reward model's scores (``signal_reward.py``) as signals named after it: ``<label>:orm``
    (the whole solution as one step) and its step scores aggregated by ``<label>:prm_min``,
    ``prm_last`` and ``prm_product``. Every item must have them, all from one model."""
    lines = path.read_text().splitlines() if path.exists() else []
    records = {record["id"]: record for record in map(json.loads, lines)}
    missing = [item["id"] for item in items if item["id"] not in records]
    if missing:
        raise SystemExit(f"{path}: {len(missing)} items not scored (e.g. {missing[0]}): run signal_reward.py first")
    if len({records[item["id"]]["model"] for item in items}) > 1:
        raise SystemExit(f"{path} mixes scores of several reward models: remove it and score again")
    for item in items:
        record = records[item["id"]]
        for sample, outcome, steps in zip(item["samples"], record["orm"], record["prm_steps"], strict=True):
            sample.setdefault("reward", {}).update(
                {
                    f"{label}:orm": outcome,
                    f"{label}:prm_min": min(steps),
                    f"{label}:prm_last": steps[-1],
                    f"{label}:prm_product": math.prod(steps),
                }
            )


def signal_values(sample: dict) -> dict[str, float]:
    """Every signal of one sample (missing measures as -inf: ranked last)."""
    values = {m: sample["confidence"].get(m, -math.inf) for m in MEASURES}
    values["calculator"] = sample["calculator"]
    for optional in ("self_judge", "learned"):
        if optional in sample:
            values[optional] = sample[optional]
    values.update(sample.get("reward", {}))
    return values


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(a random correct sample outscores a random incorrect one), ties counted half."""
    from sklearn.metrics import roc_auc_score

    finite = np.where(np.isfinite(scores), scores, np.nanmin(scores[np.isfinite(scores)]) - 1)
    return float(roc_auc_score(labels, finite))


def bootstrap(items: list, statistic, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile interval of ``statistic`` over items resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP):
        picked = [items[i] for i in rng.integers(0, len(items), len(items))]
        try:
            values.append(statistic(picked))
        except ValueError:  # a resample with one class only
            continue
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def bootstrap_mean(per_item: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """``bootstrap`` of a mean of per-item values, drawing the same resamples: the statistic is
    computed once per item instead of once per item per resample."""
    rng = np.random.default_rng(seed)
    means = [per_item[rng.integers(0, len(per_item), len(per_item))].mean() for _ in range(BOOTSTRAP)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def within_item_auroc(items: list[dict], name: str) -> float | None:
    """The mean AUROC inside each item that has right and wrong samples: what choosing among one
    question's samples needs (the pooled AUROC also rewards telling easy questions from hard ones)."""
    values = []
    for item in items:
        labels = np.array([s["correct"] for s in item["samples"]])
        if labels.all() or not labels.any():
            continue
        values.append(auroc(labels, np.array([signal_values(s)[name] for s in item["samples"]])))
    return float(np.mean(values)) if values else None


def signal_aurocs(items: list[dict]) -> dict[str, dict]:
    names = list(signal_values(items[0]["samples"][0]))
    labels = [np.array([s["correct"] for s in item["samples"]]) for item in items]
    table = {}
    for name in names:
        scores = [np.array([signal_values(s)[name] for s in item["samples"]]) for item in items]

        def statistic(chosen: list[int], scores: list[np.ndarray] = scores) -> float:
            pooled = np.concatenate([labels[i] for i in chosen])
            if pooled.all() or not pooled.any():
                raise ValueError("one class")
            return auroc(pooled, np.concatenate([scores[i] for i in chosen]))

        everyone = list(range(len(items)))
        low, high = bootstrap(everyone, statistic)
        table[name] = {"auroc": statistic(everyone), "ci95": [low, high], "within_item": within_item_auroc(items, name)}
    return table


def vote(samples: list[dict], weight=lambda s: 1.0) -> str | None:
    totals: Counter[str] = Counter()
    for sample in samples:
        if sample["answer"] is not None:
            totals[sample["answer"]] += weight(sample)
    return max(totals, key=totals.__getitem__) if totals else None


def right(item: dict, answer: str | None) -> bool:
    """Whether ``answer`` is one of the answers the grader accepted for this item's samples."""
    return answer is not None and any(s["correct"] and s["answer"] == answer for s in item["samples"])


def deepconf_offline(samples: list[dict], keep: float) -> str | None:
    ranked = sorted(samples, key=lambda s: s["confidence"].get("lowest_group", -math.inf), reverse=True)
    kept = ranked[: max(1, math.ceil(len(samples) * keep))]
    return vote(kept, lambda s: s["confidence"].get("lowest_group", 0.0))


def best_by(name: str):
    """Argmax selection: the answer of the single sample the signal rates highest."""

    def choose(samples: list[dict]) -> str | None:
        return max(samples, key=lambda sample: signal_values(sample)[name])["answer"]

    return choose


RULES = {
    "majority": lambda samples: vote(samples),
    "calculator_weighted": lambda samples: vote(samples, lambda s: signal_values(s)["calculator"]),
    "deepconf_keep_10": lambda samples: deepconf_offline(samples, 0.10),
    "deepconf_keep_90": lambda samples: deepconf_offline(samples, 0.90),
    "calculator_argmax": best_by("calculator"),
}


def learned_weighted(samples: list[dict]) -> str | None:
    return vote(samples, lambda sample: sample["learned"])


def self_judge_weighted(samples: list[dict]) -> str | None:
    return vote(samples, lambda sample: sample["self_judge"])


def reward_rules(label: str) -> dict:
    """Selection by one reward model: votes weighted by its outcome score or its lowest step score,
    and the single sample its outcome score rates highest."""

    def weighted(signal: str):
        return lambda samples: vote(samples, lambda sample: sample["reward"][signal])

    return {
        f"{label}:orm_weighted": weighted(f"{label}:orm"),
        f"{label}:orm_argmax": best_by(f"{label}:orm"),
        f"{label}:prm_weighted": weighted(f"{label}:prm_min"),
    }


def relative_features(samples: list[dict]) -> np.ndarray:
    """Each sample's signals beside its siblings': z-scores within the item, the share of the
    samples that gave its answer, and whether that answer leads. A per-question calibration: a
    confidence that is low for an easy question can be high for a hard one."""
    raw = np.array([[*(s["confidence"].get(m, -10.0) for m in MEASURES), s["calculator"]] for s in samples])
    raw[~np.isfinite(raw)] = -10.0
    z = (raw - raw.mean(axis=0)) / (raw.std(axis=0) + 1e-6)
    counts = Counter(sample["answer"] for sample in samples if sample["answer"] is not None)
    leader = max(counts.values(), default=0)
    share = [counts[s["answer"]] / len(samples) if s["answer"] is not None else 0.0 for s in samples]
    leads = [float(s["answer"] is not None and counts[s["answer"]] == leader) for s in samples]
    return np.column_stack([z, raw, share, leads])


def fit_relative_vote(dev: list[dict]):
    """A logistic model of correctness on ``relative_features``, fit on dev items at every N; the
    rule sums its probabilities per answer."""
    from sklearn.linear_model import LogisticRegression

    features, labels = [], []
    for item in dev:
        for size in SIZES:
            features.append(relative_features(item["samples"][:size]))
            labels += [s["correct"] for s in item["samples"][:size]]
    model = LogisticRegression(max_iter=2000, C=0.3).fit(np.vstack(features), np.array(labels))

    def choose(samples: list[dict]) -> str | None:
        probabilities = model.predict_proba(relative_features(samples))[:, 1]
        weights = {id(sample): p for sample, p in zip(samples, probabilities, strict=True)}
        return vote(samples, lambda sample: weights[id(sample)])

    return choose


def accuracies(items: list[dict], rules: dict) -> dict[str, dict]:
    """Per rule and N: accuracy with its interval, and (every rule but majority) the paired
    difference from majority at the same N with its interval, resampling items."""
    table: dict[str, dict] = {}
    for size in SIZES:
        majority = np.array([right(item, vote(item["samples"][:size])) for item in items], dtype=float)
        for name, rule in {**rules, "oracle_pass_at_n": None}.items():
            if rule is None:
                outcome = np.array([any(s["correct"] for s in item["samples"][:size]) for item in items], dtype=float)
            else:
                outcome = np.array([right(item, rule(item["samples"][:size])) for item in items], dtype=float)
            row = {"accuracy": float(outcome.mean()), "ci95": list(bootstrap_mean(outcome))}
            if name != "majority":
                row["minus_majority"] = float((outcome - majority).mean())
                row["minus_majority_ci95"] = list(bootstrap_mean(outcome - majority))
            table.setdefault(name, {})[str(size)] = row
    return table


def gap_closed(accuracy: dict, rule: str, size: int) -> float | None:
    """The share of the majority -> pass@N gap a rule closes at N (None when there is no gap)."""
    majority = accuracy["majority"][str(size)]["accuracy"]
    ceiling = accuracy["oracle_pass_at_n"][str(size)]["accuracy"]
    return (accuracy[rule][str(size)]["accuracy"] - majority) / (ceiling - majority) if ceiling > majority else None


def first_dip(confidences: list[float], threshold: float) -> int | None:
    """The token count at which a 16-token window first falls below ``threshold`` (None: never)."""
    if len(confidences) < WINDOW:
        return None
    running = sum(confidences[:WINDOW])
    if running / WINDOW < threshold:
        return WINDOW
    for end in range(WINDOW, len(confidences)):
        running += confidences[end] - confidences[end - WINDOW]
        if running / WINDOW < threshold:
            return end + 1
    return None


def deepconf_online(item: dict, keep: float) -> tuple[str | None, int]:
    """Replay DeepConf online on one item's stored samples: (answer, completion tokens decoded)."""
    samples = item["samples"]
    warmup = samples[:WARMUP]
    lowest = sorted(s["confidence"].get("lowest_group", -math.inf) for s in warmup)
    threshold = lowest[max(0, len(lowest) - math.ceil(len(lowest) * keep))]
    voters, tokens = list(warmup), sum(s["tokens"] for s in warmup)
    for sample in samples[WARMUP:]:
        if consensus(voters) >= CONSENSUS:
            break
        cut = first_dip(sample["token_confidence"], threshold)
        if cut is not None and cut < sample["tokens"]:
            tokens += cut  # stopped there: decoded this much, no vote
        else:
            tokens += sample["tokens"]
            voters.append(sample)
    return vote(voters, lambda s: s["confidence"].get("lowest_group", 0.0)), tokens


def consensus(samples: list[dict]) -> float:
    weights: Counter[str] = Counter()
    for sample in samples:
        if sample["answer"] is not None:
            weights[sample["answer"]] += sample["confidence"].get("lowest_group", 0.0)
    total = sum(weights.values())
    return max(weights.values()) / total if total > 0 else 0.0


def online_vs_majority(items: list[dict]) -> dict | None:
    """DeepConf online replayed against majority@16, on items whose samples carry per-token confidence
    (None where none do: samples taken from a sweep's passes, which keep trace measures only)."""
    items = [item for item in items if all("token_confidence" in s for s in item["samples"])]
    if not items:
        return None
    found = {"majority_at_16": {}, "online_keep_10": {}, "online_keep_90": {}}
    majority = [right(item, vote(item["samples"])) for item in items]
    found["majority_at_16"] = {
        "accuracy": float(np.mean(majority)),
        "tokens": int(sum(s["tokens"] for item in items for s in item["samples"])),
    }
    for keep, name in ((0.10, "online_keep_10"), (0.90, "online_keep_90")):
        replayed = [deepconf_online(item, keep) for item in items]
        found[name] = {
            "accuracy": float(
                np.mean([right(item, answer) for item, (answer, _) in zip(items, replayed, strict=True)])
            ),
            "tokens": int(sum(tokens for _, tokens in replayed)),
        }
        found[name]["token_share_of_majority_16"] = found[name]["tokens"] / found["majority_at_16"]["tokens"]
    return found


def score_learned(items: list[dict], path: Path, dataset: str) -> None:
    """Add the learned verifier's probability to every sample (refusing items it was trained on).

    Embedding the samples is most of this benchmark's time, so the scores are kept beside the
    samples (``<dataset>-test.learned-<artifact sha256[:12]>.jsonl``) and reused while the
    artifact is the same file."""
    sys.path.insert(0, str(ROOT))
    from harness.datasets import Problem
    from harness.learned import refuse_trained_items, signal_sample_facts
    from verifiers.learned import embedding_texts, feature_rows, load_artifact
    from verifiers.semantic import SentenceEmbedder

    artifact = load_artifact(path)
    problems = [Problem(item["question"], "", id=item["id"]) for item in items]
    refuse_trained_items(problems, frozenset(artifact["meta"]["item_hashes"]), "signals benchmark")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    cache = SAMPLES / f"{dataset.replace(':', '_')}-test.learned-{digest}.jsonl"
    stored = (
        {record["id"]: record["learned"] for record in map(json.loads, cache.read_text().splitlines())}
        if cache.exists()
        else {}
    )
    if not set(stored) >= {item["id"] for item in items}:
        owners = [(item["question"], sample) for item in items for sample in item["samples"]]
        facts = [signal_sample_facts(question, sample) for question, sample in owners]
        rows = feature_rows(facts, SentenceEmbedder().embed_sync(embedding_texts(facts)))
        probabilities = iter(artifact["model"].predict_proba(rows)[:, 1].tolist())
        stored = {item["id"]: [next(probabilities) for _ in item["samples"]] for item in items}
        cache.write_text("".join(json.dumps({"id": key, "learned": value}) + "\n" for key, value in stored.items()))
    for item in items:
        for sample, probability in zip(item["samples"], stored[item["id"]], strict=True):
            sample["learned"] = float(probability)


def plots(dataset: str, items: list[dict], accuracy: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    slug = dataset.replace(":", "_")
    samples = [s for item in items for s in item["samples"]]
    labels = np.array([s["correct"] for s in samples])
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for name in signal_values(samples[0]):
        scores = np.array([signal_values(s)[name] for s in samples])
        scores = np.where(np.isfinite(scores), scores, np.min(scores[np.isfinite(scores)]) - 1)
        false_positive, true_positive, _ = roc_curve(labels, scores)
        axis.plot(false_positive, true_positive, label=f"{name} ({auroc(labels, scores):.2f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{dataset}: ROC per signal (test)")
    axis.legend(fontsize=7)
    roc = f"roc-{slug}.png"
    figure.savefig(DOCS / roc, dpi=110, bbox_inches="tight")
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for name, by_size in accuracy.items():
        axis.plot(SIZES, [by_size[str(n)]["accuracy"] for n in SIZES], marker="o", label=name)
    axis.set(xlabel="samples N", ylabel="accuracy", xscale="log", title=f"{dataset}: accuracy vs N (test)")
    axis.set_xticks(SIZES, [str(n) for n in SIZES])
    axis.legend(fontsize=7)
    curve = f"accuracy-{slug}.png"
    figure.savefig(DOCS / curve, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return [roc, curve]


def _difference(row: dict) -> str:
    low, high = row["minus_majority_ci95"]
    return f"{row['minus_majority']:+.3f} ({low:+.2f} to {high:+.2f})"


def _with_interval(row: dict) -> str:
    return f"{row['accuracy']:.3f} ({row['ci95'][0]:.2f}–{row['ci95'][1]:.2f})"


def readme(report: dict) -> str:
    """The report's tables in Markdown, every number from this run."""
    lines = [
        "# Signals, the learned verifier and the trained reward model: measured",
        "",
        "Made by `benchmarks/signal_samples.py` (samples), `benchmarks/signal_reward.py` (the reward model's",
        "scores: `orm`, and `prm_*` for its step scores aggregated) and `benchmarks/signals.py` (this page); see",
        f"their docstrings. Command: `{report['command']}`. Test-split items only; the learned verifier and",
        "the reward model were trained on dev items (`ttc train-verifier`, `ttc train-reward-model`), which",
        "the runs check by content. What the numbers say, and what they do not: [findings.md](findings.md).",
        "",
    ]
    for dataset, found in report["datasets"].items():
        n = found["samples_per_item"]
        oracle = found["accuracy"]["oracle_pass_at_n"][str(n)]["accuracy"]
        lines += [
            f"## {dataset} ({found['items']} test items, {n} samples each)",
            "",
            f"pass@1 {found['pass_at_1']:.3f}, pass@{n} {oracle:.3f}.",
            "",
            "| signal | AUROC, all samples | 95% interval | mean AUROC within an item |",
            "|---|---|---|---|",
        ]
        for name, row in sorted(found["signal_auroc"].items(), key=lambda kv: -kv[1]["auroc"]):
            within = f"{row['within_item']:.3f}" if row["within_item"] is not None else "n/a"
            lines.append(f"| {name} | {row['auroc']:.3f} | {row['ci95'][0]:.3f}–{row['ci95'][1]:.3f} | {within} |")
        lines += ["", "| selection | " + " | ".join(f"N = {size}" for size in SIZES) + " |"]
        lines.append("|---|" + "---|" * len(SIZES))
        for name, by_size in found["accuracy"].items():
            cells = [_with_interval(by_size[str(size)]) for size in SIZES]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| minus majority, paired | " + " | ".join(f"N = {size}" for size in SIZES) + " | gap closed at 8 |",
        ]
        lines.append("|---|" + "---|" * (len(SIZES) + 1))
        for name, by_size in found["accuracy"].items():
            if name in ("majority", "oracle_pass_at_n"):
                continue
            cells = [_difference(by_size[str(size)]) for size in SIZES]
            closed = gap_closed(found["accuracy"], name, 8)
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {'n/a' if closed is None else f'{closed:.0%}'} |")
        online = found["deepconf_online_replay"] or {}
        if online:
            lines += [
                "",
                "| DeepConf online (replayed) | accuracy | completion tokens | share of majority@16's |",
                "|---|---|---|---|",
            ]
        for name, row in online.items():
            share = row.get("token_share_of_majority_16", 1.0)
            lines.append(f"| {name} | {row['accuracy']:.3f} | {row['tokens']:,} | {share:.2f} |")
        lines += ["", *(f"![{plot}]({plot})" for plot in found["plots"]), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learned", type=Path, help="a learned verifier trained on dev items")
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument(
        "--reward", action="append", default=[], help="a reward model's label in signal_reward.py's files (repeatable)"
    )
    args = parser.parse_args()
    DOCS.mkdir(parents=True, exist_ok=True)
    report: dict = {"command": "python benchmarks/signals.py " + " ".join(sys.argv[1:]), "datasets": {}}
    for dataset in args.datasets:
        items = load(dataset, "test", args.reward)
        rules = dict(RULES)
        if "self_judge" in items[0]["samples"][0]:
            rules["self_judge_weighted"] = self_judge_weighted
        for label in args.reward:
            rules |= reward_rules(label)
        rules["relative_vote"] = fit_relative_vote(load(dataset, "dev"))
        if args.learned:
            score_learned(items, args.learned, dataset)
            rules["learned_weighted"] = learned_weighted
            rules["learned_argmax"] = best_by("learned")
        accuracy = accuracies(items, rules)
        report["datasets"][dataset] = {
            "items": len(items),
            "samples_per_item": len(items[0]["samples"]),
            "pass_at_1": float(np.mean([s["correct"] for item in items for s in item["samples"]])),
            "signal_auroc": signal_aurocs(items),
            "accuracy": accuracy,
            "deepconf_online_replay": online_vs_majority(items),
            "plots": plots(dataset, items, accuracy),
        }
        print(json.dumps({dataset: report["datasets"][dataset]}, indent=1)[:3000], flush=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    (DOCS / "README.md").write_text(readme(report))
    print(f"saved {RESULTS} and {DOCS / 'README.md'}")


if __name__ == "__main__":
    main()
