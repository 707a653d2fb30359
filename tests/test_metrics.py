"""Classification metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from deeptalk_ser.evaluation.metrics import classification_metrics

# true:  a a a a b b b c c c
# pred:  a a b b b b b a c c
# confusion (rows true, cols pred, order a b c):
#   a: 2 2 0 | b: 0 3 0 | c: 1 0 2
# recall a=2/4 b=3/3 c=2/3; precision a=2/3 b=3/5 c=2/2
# F1 a = 2*(2/3)(1/2)/(2/3+1/2) = 4/7, b = 2*(3/5)(1)/(8/5) = 3/4, c = 2*(1)(2/3)/(5/3) = 4/5
Y_TRUE = list("aaaabbbccc")
Y_PRED = list("aabbbbbacc")


def test_three_class_hand_computed():
    m = classification_metrics(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert m["n"] == 10
    assert m["wa"] == pytest.approx(0.7)
    assert m["ua"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert m["macro_f1"] == pytest.approx((4 / 7 + 3 / 4 + 4 / 5) / 3)
    assert m["f1_per_class"] == pytest.approx({"a": 4 / 7, "b": 0.75, "c": 0.8})
    assert m["recall_per_class"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 2 / 3})
    assert m["confusion"] == [[2, 2, 0], [0, 3, 0], [1, 0, 2]]


def test_class_order_permutes_confusion():
    m = classification_metrics(Y_TRUE, Y_PRED, ["c", "a", "b"])
    assert m["confusion"] == [[2, 1, 0], [0, 2, 2], [0, 0, 3]]
    assert m["ua"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)


def test_class_absent_from_y_true_excluded_from_ua_and_f1():
    # d never occurs in y_true but is predicted once (for an a)
    m = classification_metrics(list("aabbc"), list("adbbc"), ["a", "b", "c", "d"])
    assert m["wa"] == pytest.approx(0.8)
    assert m["ua"] == pytest.approx((0.5 + 1 + 1) / 3)  # not / 4
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m["recall_per_class"]["d"] == 0.0 and m["f1_per_class"]["d"] == 0.0
    assert m["confusion"][0] == [1, 0, 0, 1] and m["confusion"][3] == [0, 0, 0, 0]


def test_perfect():
    m = classification_metrics(["x", "y"], ["x", "y"], ["x", "y"])
    assert (m["wa"], m["ua"], m["macro_f1"]) == (1.0, 1.0, 1.0)


def test_empty_gives_nan():
    e = classification_metrics([], [], ["x", "y"])
    assert e["n"] == 0 and math.isnan(e["wa"]) and math.isnan(e["ua"])
