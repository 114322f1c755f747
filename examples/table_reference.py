#!/usr/bin/python3
"""table_reference.py - a real table for `cltrain table` and scikit-learn's accuracy on the same split.

Usage: examples/table_reference.py OUT.csv [VALIDATION_SPLIT]   (Debian: apt-get install python3-sklearn)

Writes scikit-learn's bundled Wisconsin breast-cancer data (sklearn/datasets/data/breast_cancer.csv, 569 rows,
30 features, target 0 = malignant, 1 = benign) as a CSV with a header row, then trains scikit-learn models on the
split `cltrain table --validation-split F` uses (Keras semantics: the first 1-F of the rows train, the last F
validate, no shuffling before the split) with inputs standardized by the training rows, and prints their
validation accuracy and ROC AUC.
"""
import csv, sys
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    split = float(sys.argv[2]) if len(sys.argv) == 3 else 0.2
    d = load_breast_cancer()
    names = [n.replace(" ", "_") for n in d.feature_names]
    with open(sys.argv[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names + ["target"])
        for x, y in zip(d.data, d.target):
            w.writerow([repr(float(v)) for v in x] + [int(y)])
    n = len(d.target)
    ntrain = n - int(split * n)
    xtr, ytr, xva, yva = d.data[:ntrain], d.target[:ntrain], d.data[ntrain:], d.target[ntrain:]
    mean, std = xtr.mean(0), xtr.std(0)
    xtr, xva = (xtr - mean) / std, (xva - mean) / std
    print(f"{sys.argv[1]}: {n} rows, {ntrain} training, {n - ntrain} validation (the last {split:g})")
    models = {
        "LogisticRegression()": LogisticRegression(max_iter=1000),
        "MLPClassifier((64, 32), adam lr 1e-3, batch 32, 10 epochs)":
            MLPClassifier((64, 32), solver="adam", learning_rate_init=1e-3, batch_size=32, max_iter=10, random_state=1),
        "MLPClassifier((64, 32), adam lr 1e-3, batch 32, 200 epochs)":
            MLPClassifier((64, 32), solver="adam", learning_rate_init=1e-3, batch_size=32, max_iter=200, random_state=1),
    }
    for name, m in models.items():
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(xtr, ytr)
        p = m.predict_proba(xva)[:, 1]
        print(f"scikit-learn {name}: validation accuracy {((p >= 0.5) == yva).mean():.4f}, ROC AUC {roc_auc_score(yva, p):.4f}")


if __name__ == "__main__":
    main()
