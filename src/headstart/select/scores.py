"""Transferability scores: how well features (or a source head) suit the user's labels, no training.

- LogME (You et al., ICML 2021): the log marginal likelihood of a Bayesian linear model from the
  features to each one-hot target column, with the prior and noise precisions (alpha, beta) set
  by evidence maximisation, per example, averaged over the classes. Higher is better.
- LEEP (Nguyen et al., ICML 2020): mean log-likelihood of the labels under the source head's
  soft predictions passed through the empirical P(label | source class). Higher is better.
- NCE (Tran et al., ICCV 2019): minus the conditional entropy H(label | argmax source class).
- H-score (Bao et al., ICIP 2019): tr(cov(f)^-1 cov(E[f | y])), with a Ledoit-Wolf shrunk cov(f)
  (Ibrahim et al., ICLR 2023) so that it stays finite when features outnumber examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HeadstartError

LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class Evidence:
    """One target column's fit: evidence per example and the precisions that maximise it."""

    evidence: float
    alpha: float
    beta: float
    iterations: int


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of integer class labels: the mean over classes of each one-hot column's evidence."""
    y = np.asarray(labels)
    classes = np.unique(y)
    if len(classes) < 2:
        raise HeadstartError("LogME needs at least two classes in the labels.")
    basis = SpectralBasis(features)
    return float(np.mean([basis.fit((y == c).astype(np.float64)).evidence for c in classes]))


class SpectralBasis:
    """The SVD of the features, computed once and shared by every target column.

    With f = U diag(s) V^T, everything the fixed point needs lives in the k = min(N, D) singular
    directions: z = U^T y, sigma = s^2, and the part of y outside the column space of f. That is
    the fast form of LogME: O(N D min(N, D)) once, then O(k) per iteration and target.
    """

    def __init__(self, features):
        self.n, self.d = features.shape
        if self.n > self.d:
            u, s, _ = np.linalg.svd(_as_matrix(features), full_matrices=False)
        else:  # wide features (TF-IDF, few examples): the N x N Gram matrix has the same spectrum
            gram = features @ features.T  # sparse TF-IDF rows stay sparse until here
            sigma, u = np.linalg.eigh(_as_matrix(gram))
            s = np.sqrt(np.clip(sigma, 0.0, None))
        keep = s > s.max(initial=0.0) * 1e-10
        self.u, self.sigma = u[:, keep], s[keep] ** 2

    def fit(self, y: np.ndarray, max_iter: int = 100, tol: float = 1e-3) -> Evidence:
        """MacKay's fixed point for alpha and beta, then the evidence per example at that point."""
        z2 = (self.u.T @ y) ** 2
        outside = max(float(y @ y - z2.sum()), 0.0)  # |y|^2 not reachable by any weights
        alpha, beta, iteration = 1.0, 1.0, 0
        for iteration in range(1, max_iter + 1):  # noqa: B007
            t = alpha / beta
            gamma = float((self.sigma / (self.sigma + t)).sum())
            m2 = float((self.sigma * z2 / (self.sigma + t) ** 2).sum())
            res2 = float((z2 * (t / (self.sigma + t)) ** 2).sum()) + outside
            alpha = gamma / (m2 + 1e-12)
            beta = (self.n - gamma) / (res2 + 1e-12)
            if abs(alpha / beta - t) / t < tol:
                break
        return Evidence(self.evidence(z2, outside, alpha, beta), alpha, beta, iteration)

    def evidence(self, z2: np.ndarray, outside: float, alpha: float, beta: float) -> float:
        """log p(y | alpha, beta) / N, y = f w + noise, w ~ N(0, I/alpha), noise ~ N(0, I/beta)."""
        t = alpha / beta
        m2 = float((self.sigma * z2 / (self.sigma + t) ** 2).sum())
        res2 = float((z2 * (t / (self.sigma + t)) ** 2).sum()) + outside
        # log|alpha I + beta f^T f|: the k singular directions, plus D - k directions at alpha
        log_det = float(np.log(alpha + beta * self.sigma).sum())
        log_det += (self.d - len(self.sigma)) * np.log(alpha)
        total = (
            self.d / 2 * np.log(alpha)
            + self.n / 2 * np.log(beta)
            - alpha / 2 * m2
            - beta / 2 * res2
            - log_det / 2
            - self.n / 2 * LOG_2PI
        )
        return float(total / self.n)


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP from (N, Z) source-class probabilities and N integer labels."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = _dense_labels(labels)
    joint = np.zeros((y.max() + 1, theta.shape[1]))
    np.add.at(joint, y, theta)  # sum over examples of theta(x)_z for each (label, z)
    joint /= len(y)
    label_given_z = joint / np.clip(joint.sum(axis=0, keepdims=True), 1e-300, None)
    likelihood = (theta * label_given_z[y]).sum(axis=1)
    return float(np.log(np.clip(likelihood, 1e-300, None)).mean())


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE = -H(Y | Z) from hard source labels Z (argmax of the source head) and labels Y."""
    z = _dense_labels(source_labels)
    y = _dense_labels(labels)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= len(y)
    p_z = joint.sum(axis=0, keepdims=True)
    present = joint > 0
    conditional = joint[present] / np.broadcast_to(p_z, joint.shape)[present]
    return float((joint[present] * np.log(conditional)).sum())


def h_score(features: np.ndarray, labels: np.ndarray, shrink: bool = True) -> float:
    """tr(cov(f)^-1 cov(E[f|y])); cov(f) Ledoit-Wolf shrunk unless shrink=False (then pinv)."""
    f = _as_matrix(features)
    f = f - f.mean(axis=0)
    y = _dense_labels(labels)
    if shrink:
        from sklearn.covariance import ledoit_wolf

        cov, _ = ledoit_wolf(f, assume_centered=True)
        try:
            inverse = np.linalg.inv(cov)
        except np.linalg.LinAlgError:  # no shrinkage on a handful of items: still singular
            inverse = np.linalg.pinv(cov, hermitian=True)
    else:
        inverse = np.linalg.pinv(f.T @ f / len(f), hermitian=True)
    means = np.zeros((y.max() + 1, f.shape[1]))
    np.add.at(means, y, f)
    counts = np.bincount(y, minlength=len(means))[:, None]
    means = means / np.clip(counts, 1, None)
    # cov(E[f|y]) = sum_c p(c) mu_c mu_c^T, with f centred
    between = (means * counts).T @ means / len(f)
    return float(np.trace(inverse @ between))


def source_probabilities(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _as_matrix(features) -> np.ndarray:
    if hasattr(features, "toarray"):  # scipy sparse (TF-IDF)
        features = features.toarray()
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise HeadstartError(f"Scores need an (N, D) feature matrix with N >= 1; got {f.shape}.")
    return f


def _dense_labels(labels) -> np.ndarray:
    """Any labels as 0..K-1 integers."""
    _, index = np.unique(np.asarray(labels), return_inverse=True)
    return index.ravel()
