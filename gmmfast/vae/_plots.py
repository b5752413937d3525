"""Figures for the VAE: latent space with Gaussian ellipses, reconstructions,
the decoded latent manifold, generated samples, GMM against k-means.

matplotlib (the ``plot`` extra) is imported when a figure is drawn, with
the Agg backend; torch is never imported here (models are duck-typed).
Every function writes one PNG and returns its path.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..mixture._gaussian import full_covariances
from ..utils._atomic import savefig_atomic
from ..utils._plotting import pyplot


def _projection(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(mean, 2 x d basis) projecting onto the first two principal axes (identity in 2-d)."""
    d = points.shape[1]
    if d == 2:
        return np.zeros(2), np.eye(2), "z"
    centre = points.mean(0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    return centre, vt[:2], "PC"


def _gaussians(model: Any) -> list[tuple[Any, float, np.ndarray, np.ndarray]]:
    """(label or index, weight, mean, full covariance) of every Gaussian of a
    GaussianMixture, or of every class's mixture of a GMMClassifier."""
    out = []
    if hasattr(model, "estimators_") and hasattr(model, "classes_"):
        for label, est in zip(np.asarray(model.classes_).tolist(), model.estimators_):
            for w, m, c in zip(est.weights_, est.means_, full_covariances(est)):
                out.append((label, float(w), m, c))
    elif model is not None:
        for k, (w, m, c) in enumerate(zip(model.weights_, model.means_, full_covariances(model))):
            out.append((k, float(w), m, c))
    return out


def _ellipse(
    ax, mean2: np.ndarray, cov2: np.ndarray, color: Any, n_std: Sequence[float] = (1.0, 2.0)
) -> None:
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov2)
    vals = np.clip(vals, 0, None)
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    for s in n_std:
        ax.add_patch(
            Ellipse(
                mean2,
                2 * s * np.sqrt(vals[-1]),
                2 * s * np.sqrt(vals[0]),
                angle=angle,
                fill=False,
                edgecolor=color,
                linewidth=1.5 if s == 1.0 else 0.8,
                alpha=0.9,
            )
        )


def _colors(labels: Sequence[Any]) -> dict[Any, Any]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def plot_latent_space(
    path: str | os.PathLike,
    latents: np.ndarray,
    labels: np.ndarray,
    model: Any = None,
    title: str = "latent space",
    max_points: int = 5000,
    seed: int = 0,
) -> str:
    """Latent means coloured by class, with the 1- and 2-sigma ellipses of
    ``model``'s Gaussians (a GMMClassifier: coloured by class; a
    GaussianMixture: black). Latent spaces above 2-d are shown on their
    first two principal axes, the Gaussians projected likewise."""
    plt = pyplot()
    latents, labels = np.asarray(latents), np.asarray(labels)
    centre, basis, axis = _projection(latents)
    rows = np.random.RandomState(seed).permutation(len(latents))[:max_points]
    P = (latents[rows] - centre) @ basis.T
    classes = np.unique(labels)
    colors = _colors(classes.tolist())
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for label in classes:
        sel = labels[rows] == label
        ax.scatter(
            P[sel, 0],
            P[sel, 1],
            s=3,
            alpha=0.4,
            color=colors[label.item()],
            label=str(label),
            rasterized=True,
        )
    is_classifier = hasattr(model, "classes_")
    for key, _, mean, cov in _gaussians(model):
        color = colors.get(key, "k") if is_classifier else "k"
        _ellipse(ax, (mean - centre) @ basis.T, basis @ cov @ basis.T, color)
        ax.plot(*((mean - centre) @ basis.T), marker="x", color=color, markersize=6)
    ax.set_xlabel(f"{axis}1")
    ax.set_ylabel(f"{axis}2")
    ax.set_title(title, fontsize=10)
    ax.legend(markerscale=4, fontsize=8, loc="best")
    return _save(fig, path)


def plot_images(
    path: str | os.PathLike, rows: Sequence[np.ndarray], row_titles: Sequence[str], title: str = ""
) -> str:
    """A grid of images: one row per entry of ``rows`` (each (n, H, W) or (n, H * W))."""
    plt = pyplot()
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        figsize=(0.9 * n_cols, 0.95 * len(rows) + (0.3 if title else 0)),
        squeeze=False,
    )
    for r, images in enumerate(rows):
        images = np.asarray(images)
        side = images.shape[-1] if images.ndim == 3 else int(round(np.sqrt(images.shape[1])))
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("off") if c >= len(images) else ax.imshow(
                images[c].reshape(-1, side), cmap="gray", vmin=0, vmax=1
            )
            if c == 0:
                ax.axis("on")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_ylabel(row_titles[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_reconstructions(
    path: str | os.PathLike, originals: np.ndarray, reconstructions: np.ndarray, n: int = 12
) -> str:
    """Originals above their reconstructions."""
    return plot_images(
        path,
        [originals[:n], reconstructions[:n]],
        ["original", "reconstructed"],
        "VAE reconstructions (decoded latent means)",
    )


def plot_manifold(
    path: str | os.PathLike, vae: Any, n: int = 20, latents: np.ndarray | None = None
) -> str:
    """Images decoded on an n x n grid of a 2-d latent space: Gaussian
    quantiles 0.05..0.95 of the prior, or the 1st..99th percentiles of
    ``latents`` when given."""
    plt = pyplot()
    from scipy.stats import norm

    if int(vae.latent_dim) != 2:
        raise ValueError("the latent manifold is drawn for 2-d latent spaces only.")
    if latents is None:
        xs = ys = norm.ppf(np.linspace(0.05, 0.95, n))
    else:
        lo, hi = np.percentile(latents, [1, 99], axis=0)
        xs, ys = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    grid = np.array([[x, y] for y in ys[::-1] for x in xs])
    images = vae.decode(grid)
    h, w = images.shape[1:]
    canvas = images.reshape(n, n, h, w).transpose(0, 2, 1, 3).reshape(n * h, n * w)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(
        canvas, cmap="gray", vmin=0, vmax=1, extent=(xs[0], xs[-1], ys[0], ys[-1]), aspect="auto"
    )
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title("decoded latent manifold", fontsize=10)
    return _save(fig, path)


def plot_gmm_vs_kmeans(
    path: str | os.PathLike,
    latents: np.ndarray,
    labels: np.ndarray,
    gmm: Any,
    gmm_clusters: np.ndarray,
    kmeans_centres: np.ndarray,
    kmeans_clusters: np.ndarray,
    scores: dict[str, dict[str, float]] | None = None,
    max_points: int = 5000,
    gmm_title: str = "GMM",
) -> str:
    """Two panels on 2-d latents: the GMM's clusters and ellipses, k-means'
    clusters and centres (with their accuracy, NMI, ARI when given: ``scores``
    keyed 'GMM' and 'k-means'). ``gmm_title`` names the first panel (a GMM
    fitted on a transform of the latents, e.g. their directions, draws its
    ellipses in that space)."""
    plt = pyplot()
    latents = np.asarray(latents)
    if latents.shape[1] != 2:
        raise ValueError("GMM versus k-means is drawn for 2-d latent spaces only.")
    rows = np.random.RandomState(0).permutation(len(latents))[:max_points]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    colors = _colors(list(range(max(int(gmm_clusters.max()), int(kmeans_clusters.max())) + 1)))
    for ax, clusters, name in (
        (axes[0], gmm_clusters, "GMM"),
        (axes[1], kmeans_clusters, "k-means"),
    ):
        ax.scatter(
            latents[rows, 0],
            latents[rows, 1],
            s=3,
            alpha=0.4,
            c=[colors[int(c)] for c in clusters[rows]],
            rasterized=True,
        )
        s = (scores or {}).get(name)
        ax.set_title(
            (gmm_title if name == "GMM" else name)
            + (
                f": accuracy {s['accuracy']:.1%}, NMI {s['nmi']:.3f}, ARI {s['ari']:.3f}"
                if s
                else ""
            ),
            fontsize=9,
        )
        ax.set_xlabel("z1")
    for k, _, mean, cov in _gaussians(gmm):
        _ellipse(axes[0], mean, cov, colors[k])
    axes[1].scatter(kmeans_centres[:, 0], kmeans_centres[:, 1], marker="x", s=60, c="k")
    axes[0].set_ylabel("z2")
    return _save(fig, path)


def plot_history(path: str | os.PathLike, histories: dict[str, dict[str, list[float]]]) -> str:
    """Training and validation loss per epoch of one or more runs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, h in histories.items():
        epochs = np.arange(1, len(h["train_loss"]) + 1)
        (line,) = ax.plot(epochs, h["train_loss"], label=f"{name} train")
        ax.plot(epochs, h["val_loss"], "--", color=line.get_color(), label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per image")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> str:
    fig.tight_layout()
    try:
        savefig_atomic(fig, path, dpi=110)  # the old figure survives a failed write
    finally:
        pyplot().close(fig)
    return str(path)
