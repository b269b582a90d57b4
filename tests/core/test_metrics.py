"""``tlcli.core.metrics`` against scikit-learn's own metrics, on seeded random logits and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from tlcli.core.metrics import OVERFIT_GAP, UNDERFIT_TRAIN_ACC, classification_metrics, fit_verdict, topk_accuracy

CLASSES = ["cat", "dog", "fox", "owl", "yak"]


def _random(n=300, num_classes=5, seed=0, skill=1.0):
    """Logits that lean towards the true label (so the metrics are neither 0 nor chance)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    logits = torch.randn(n, num_classes, generator=generator)
    logits[torch.arange(n), labels] += skill
    return logits, labels


def test_every_figure_matches_scikit_learn():
    logits, labels = _random()
    result = classification_metrics(logits, labels, CLASSES, k=3)
    truth, predicted = labels.numpy(), logits.argmax(1).numpy()
    assert 0.3 < result.accuracy < 0.9
    assert result.accuracy == pytest.approx(sk.accuracy_score(truth, predicted))
    np.testing.assert_array_equal(result.confusion, sk.confusion_matrix(truth, predicted, labels=range(5)))
    precision, recall, f1, support = sk.precision_recall_fscore_support(truth, predicted, labels=range(5))
    for i, row in enumerate(result.per_class):
        assert row["class"] == CLASSES[i] and row["support"] == support[i]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((precision[i], recall[i], f1[i]))
    for average in ("macro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(truth, predicted, average=average)
        assert (getattr(result, f"precision_{average}"), getattr(result, f"recall_{average}"),
                getattr(result, f"f1_{average}")) == pytest.approx((p, r, f))
    assert set(result.topk) == {1, 3}
    assert result.topk[1] == pytest.approx(result.accuracy)
    assert result.topk[3] == pytest.approx(sk.top_k_accuracy_score(truth, logits.numpy(), k=3, labels=range(5)))


def test_macro_averages_skip_classes_absent_from_the_split_but_the_matrix_keeps_them():
    logits, labels = _random(seed=1)
    keep = labels != 2  # no "fox" in this split; the model may still predict it
    logits, labels = logits[keep], labels[keep]
    result = classification_metrics(logits, labels, CLASSES)
    truth, predicted = labels.numpy(), logits.argmax(1).numpy()
    present = [0, 1, 3, 4]
    p, r, f, _ = sk.precision_recall_fscore_support(truth, predicted, labels=present, average="macro", zero_division=0)
    assert (result.precision_macro, result.recall_macro, result.f1_macro) == pytest.approx((p, r, f))
    assert result.confusion.shape == (5, 5) and result.confusion[2].sum() == 0
    assert result.per_class[2]["support"] == 0 and result.per_class[2]["recall"] == 0.0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_topk_accuracy_matches_scikit_learn_and_clamps_k_to_the_classes(k):
    logits, labels = _random(n=200, num_classes=4, seed=2, skill=0.3)
    expected = sk.top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=range(4))
    assert topk_accuracy(logits, labels, k) == pytest.approx(expected)
    assert topk_accuracy(logits, labels, 10) == 1.0  # k beyond the classes: every label is in the top k
    result = classification_metrics(logits, labels, CLASSES[:4], k=10)
    assert set(result.topk) == {1, 4} and result.topk[4] == 1.0


def test_to_dict_is_plain_json_with_every_figure():
    logits, labels = _random(n=50, seed=3)
    result = classification_metrics(logits, labels, CLASSES)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["accuracy"] == result.accuracy and document["confusion_matrix"] == result.confusion.tolist()
    assert document["topk_accuracy"] == {str(k): v for k, v in result.topk.items()}
    assert document["per_class"] == result.per_class and document["f1_weighted"] == result.f1_weighted


def test_fit_verdict_reads_the_gap_and_the_training_accuracy():
    high = UNDERFIT_TRAIN_ACC + 0.2
    assert fit_verdict(high, high - OVERFIT_GAP - 0.01) == "over-fitting"
    assert fit_verdict(high, high - OVERFIT_GAP / 2) == "balanced"
    assert fit_verdict(UNDERFIT_TRAIN_ACC - 0.1, UNDERFIT_TRAIN_ACC - 0.1) == "under-fitting"
