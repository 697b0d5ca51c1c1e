"""Learning a topic model's weights: IDF, one linear classifier per topic, its calibration and threshold.

Apart from the runtime model (`topics.py`) so a worker that only predicts
never imports the learners. `TopicModel.fit` calls in here; the `model` each
function takes is that `TopicModel`, not imported, so imports point one way.
Three linear learners are supported (logistic regression, a linear SVM with
sigmoid calibration, SGD with logistic loss); all end as the same plain
arrays: a weight vector and an intercept per topic, and a sigmoid `(a, b)`
that maps the linear score to a probability.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.svm import LinearSVC

from feedsift.models.metrics import best_threshold, scores

DENSE_C = 1.0  # the meaning learner's regularisation, on unit-length vectors


def fit_counts(model, counts: sp.csr_matrix, Y: np.ndarray, folds: int = 5, seed: int = 0, group=None):
    """Learns IDF, one classifier per topic and each topic's threshold (on `folds`-fold out-of-fold predictions).

    Rows with the same `group` (views of one article) always fall in the same fold.
    """
    Y = np.asarray(Y, dtype=np.int8)
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    model.idf_ = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
    model.idf_[model._text_width :] = 1.0
    X = model._tfidf(counts)
    coefs, intercepts, calib, thresholds = [], [], [], []
    oof = np.zeros(Y.shape, dtype=np.float32)
    cv = fold_splits(n, folds, seed, group)
    learn = _fused if model.fusion and model._dense_width else _joint
    for j in range(Y.shape[1]):
        oof[:, j], (w, c, a, b) = learn(model, X, Y[:, j], cv)
        thresholds.append(best_threshold(Y[:, j], oof[:, j]))
        coefs.append(w)
        intercepts.append(c)
        calib.append((a, b))
    model.coef_ = np.vstack(coefs).astype(np.float32)
    model.intercept_ = np.asarray(intercepts, dtype=np.float32)
    model.calib_ = np.asarray(calib, dtype=np.float32)
    model.thresholds_ = np.asarray(thresholds, dtype=np.float32)
    model.oof_ = oof
    model.meta_ = {
        **({"vectors": model._vectors().provenance()} if model.word_vectors else {}),
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "n_train": int(n),
        "cv": scores(Y, oof >= model.thresholds_, model.topics),
    }
    return model


def _joint(model, X: sp.csr_matrix, y: np.ndarray, cv) -> tuple[np.ndarray, tuple]:
    """One learner over every column: out-of-fold probabilities and (weights, intercept, a, b)."""
    oof = cross_val_predict(classifier(model), X, y, cv=cv, method="predict_proba")[:, 1]
    return oof, linear(classifier(model).fit(X, y))


def _fused(model, X: sp.csr_matrix, y: np.ndarray, cv) -> tuple[np.ndarray, tuple]:
    """Words and meaning learned apart, their log-odds mixed `(1 - fusion) : fusion`, folded into one linear model.

    Trained together, the words separate the written corpus on their own and the
    vector columns get little weight; a learner that sees only the vectors has
    to rely on meaning, which is what carries over to names the corpus lacks.
    The mix of two calibrated linear scores is itself linear in the columns, so
    the result is stored and run exactly like a single learner (a, b = -1, 0).
    """
    at = model._text_width
    dims = np.arange(X.shape[1] - at)
    scale = np.where(dims < model._vectors().dim, model.vector_weight, model.definition_weight)
    words, dense = X[:, :at], X[:, at:].toarray() / scale  # the vectors at unit length, whatever their weight
    meaning = LogisticRegression(C=DENSE_C, class_weight=model.class_weight, max_iter=3000)
    f = model.fusion
    oof_w = cross_val_predict(classifier(model), words, y, cv=cv, method="predict_proba")[:, 1]
    oof_m = cross_val_predict(meaning, dense, y, cv=cv, method="predict_proba")[:, 1]
    oof = expit((1 - f) * _logit(oof_w) + f * _logit(oof_m))
    w_w, c_w, a, b = linear(classifier(model).fit(words, y))
    m = meaning.fit(dense, y)
    w = np.concatenate([-(1 - f) * a * w_w, f * m.coef_[0] / scale])
    c = -(1 - f) * (a * c_w + b) + f * float(m.intercept_[0])
    return oof, (w, c, -1.0, 0.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def classifier(model):
    """A fresh, unfitted learner for one topic, as the model's settings describe it."""
    if model.classifier == "svm":
        svm = LinearSVC(C=model.C, class_weight=model.class_weight, max_iter=5000)
        return CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False)
    if model.classifier == "sgd":
        return SGDClassifier(
            loss="log_loss", alpha=model.alpha, class_weight=model.class_weight, max_iter=100, tol=1e-4, random_state=0
        )
    return LogisticRegression(C=model.C, class_weight=model.class_weight, max_iter=2000, solver="liblinear")


def linear(clf) -> tuple[np.ndarray, float, float, float]:
    """(weights, intercept, a, b) of a fitted classifier: p = 1 / (1 + exp(a * (x.w + c) + b))."""
    if isinstance(clf, CalibratedClassifierCV):
        pair = clf.calibrated_classifiers_[0]
        est, sig = pair.estimator, pair.calibrators[0]
        return est.coef_[0], float(est.intercept_[0]), float(sig.a_), float(sig.b_)
    return clf.coef_[0], float(clf.intercept_[0]), -1.0, 0.0


def fold_splits(n: int, folds: int, seed: int = 0, group=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled k-fold (train, test) index pairs; rows sharing a group stay together."""
    if group is None:
        return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros((n, 1))))
    uniq, inverse = np.unique(np.asarray(group), return_inverse=True)
    fold = (np.random.RandomState(seed).permutation(len(uniq)) % folds)[inverse]
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(folds)]
