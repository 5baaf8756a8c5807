"""What the codes and errors of a model are worth, measured on host arrays (numpy, scikit-learn).

The PCA baseline at the model's code size, a linear probe and k-NN on the codes, and an
anomaly-detection AUROC with reconstruction error as the score.
"""

import numpy as np
import scipy.linalg


def pca_fit(x_train_NxD: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
  """(mean [D], basis [D, components]): the top principal directions of the training data.

  Exact (an eigendecomposition of the D x D covariance), not randomised, so the
  baseline is a fixed number for a given split.
  """
  x = np.asarray(x_train_NxD, np.float64)
  mean_D = x.mean(axis=0)
  centred = (x - mean_D).astype(np.float32)  # The N x D x D product in float32: twice as fast.
  scatter_DxD = (centred.T @ centred).astype(np.float64)
  d = scatter_DxD.shape[0]
  components = min(components, d)
  # Only the top eigenpairs (LAPACK's subset driver): several times faster than all of them.
  _, eigvecs_DxK = scipy.linalg.eigh(scatter_DxD, subset_by_index=(d - components, d - 1))
  return mean_D, eigvecs_DxK[:, ::-1]  # Ascending -> the largest variance first.


def pca_squared_error(x_NxD: np.ndarray, mean_D: np.ndarray, basis_DxK: np.ndarray) -> np.ndarray:
  """Squared error per example [N] of the projection onto the PCA subspace."""
  centred = np.asarray(x_NxD, np.float64) - mean_D
  residual = centred - (centred @ basis_DxK) @ basis_DxK.T
  return np.sum(np.square(residual), axis=1)


def linear_probe_accuracy(codes_train: np.ndarray, labels_train: np.ndarray,
                          codes_test: np.ndarray, labels_test: np.ndarray) -> float:
  """Test accuracy of a logistic regression fit on standardised train codes."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  clf.fit(codes_train, labels_train)
  return float(clf.score(codes_test, labels_test))


def knn_accuracy(codes_train: np.ndarray, labels_train: np.ndarray, codes_test: np.ndarray,
                 labels_test: np.ndarray, neighbors: int) -> float:
  """Test accuracy of a k-nearest-neighbour vote (Euclidean distance between codes)."""
  from sklearn.neighbors import KNeighborsClassifier

  clf = KNeighborsClassifier(n_neighbors=neighbors)
  clf.fit(codes_train, labels_train)
  return float(clf.score(codes_test, labels_test))


def salt_and_pepper(x_NxD: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Sets a random `fraction` of each image's pixels to 0 or 1 (equally likely).

  Keeps the input domain: binarised images stay binary, grey levels stay in [0, 1].
  """
  rng = np.random.default_rng(seed)
  hit = rng.random(x_NxD.shape) < fraction
  return np.where(hit, rng.integers(0, 2, x_NxD.shape).astype(x_NxD.dtype), x_NxD)


def auroc(scores_normal: np.ndarray, scores_anomalous: np.ndarray) -> float:
  """Area under the ROC curve for telling anomalies (higher score) from normal examples."""
  from sklearn.metrics import roc_auc_score

  labels = np.concatenate([np.zeros(len(scores_normal)), np.ones(len(scores_anomalous))])
  return float(roc_auc_score(labels, np.concatenate([scores_normal, scores_anomalous])))

