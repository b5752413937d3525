"""Figures the commands write (matplotlib, optional): image grids and line plots."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..utils._atomic import savefig_atomic
from ..utils._plotting import PLOT_HINT, pyplot


def _save(plt, fig, path) -> bool:
    """Lay out, write atomically, close, say so."""
    fig.tight_layout()
    try:
        savefig_atomic(fig, path, dpi=110)
    finally:
        plt.close(fig)
    print(f"wrote {path}")
    return True


def image_grid(path, rows: Sequence[tuple[str, np.ndarray]]) -> bool:
    """One row of images per (title, images); NaN pixels in red. False (with a note) without matplotlib."""
    plt = pyplot(required=False)
    if plt is None:
        print(f"no figure: matplotlib is not installed ({PLOT_HINT})")
        return False
    n_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(1.2 * n_cols, 1.25 * len(rows)), squeeze=False
    )
    cmap = plt.get_cmap("gray").with_extremes(bad="tab:red")  # missing pixels in red
    for r, (title, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = np.asarray(images[c], dtype=np.float64)
                if image.ndim == 1:
                    side = int(round(np.sqrt(image.size)))
                    image = image.reshape(side, -1)
                ax.imshow(image, cmap=cmap, vmin=0, vmax=1)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    return _save(plt, fig, path)


def figure_inpainting(
    path, originals: np.ndarray, panels: dict[str, tuple[np.ndarray, np.ndarray]]
) -> bool:
    """Original, then masked / inpainted rows for each mask in ``panels`` ({name: (observed, filled)})."""
    rows = [("original", originals)]
    for name, (obs, fill) in panels.items():
        rows += [(f"masked {name}".strip(), np.where(obs, originals, np.nan)), ("inpainted", fill)]
    return image_grid(path, rows)


def figure_lines(
    path,
    panels: Sequence[tuple[dict[str, tuple[Sequence[float], Sequence[float]]], str, str]],
    xlabel: str,
    markers: bool = False,
) -> bool:
    """Line plots side by side, one per (series {label: (x, y)}, title, y label); empty panels are left out."""
    plt = pyplot(required=False)
    if plt is None:
        print(f"no figure: matplotlib is not installed ({PLOT_HINT})")
        return False
    panels = [p for p in panels if any(len(values) for _, values in p[0].values())]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, (series, title, ylabel) in zip(axes[0], panels):
        for label, (x, values) in series.items():
            ax.plot(
                x, values, marker="o" if markers else None, markersize=3, linewidth=1.2, label=label
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7, ncol=2)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(plt, fig, path)


def figure_clusters(path, settings: Sequence[dict]) -> bool:
    """Per setting a column: k-means' labels, the mixture's soft assignment with its
    components' 2-sigma ellipses, and BIC against K. ``settings``: dicts with ``name``,
    ``X``, ``kmeans_labels``, ``kmeans_ari``, ``resp``, ``means``, ``covariances`` (K x 2 x 2),
    ``gmm_ari`` and ``bic`` ({K: BIC})."""
    plt = pyplot(required=False)
    if plt is None:
        print(f"no figure: matplotlib is not installed ({PLOT_HINT})")
        return False
    from matplotlib.patches import Ellipse

    palette = np.array([[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17]])
    fig, axes = plt.subplots(3, len(settings), figsize=(4.2 * len(settings), 10.5), squeeze=False)
    for col, s in enumerate(settings):
        X = s["X"]
        ax = axes[0, col]
        ax.scatter(X[:, 0], X[:, 1], s=3, c=palette[s["kmeans_labels"] % len(palette)])
        ax.set_title(f"{s['name']}: k-means, ARI {s['kmeans_ari']:.2f}", fontsize=9)
        ax = axes[1, col]
        # Colour = responsibilities mixing the components' colours: overlap shows as blends.
        colours = np.clip(s["resp"][:, : len(palette)] @ palette[: s["resp"].shape[1]], 0, 1)
        ax.scatter(X[:, 0], X[:, 1], s=3, c=colours)
        for mean, cov in zip(s["means"], s["covariances"]):
            values, vectors = np.linalg.eigh(cov)
            angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
            width, height = 2 * 2 * np.sqrt(values[::-1])  # 2 standard deviations each way
            ax.add_patch(
                Ellipse(mean, width, height, angle=angle, fill=False, color="black", linewidth=1.2)
            )
        ax.set_title(f"full-covariance mixture, ARI {s['gmm_ari']:.2f}", fontsize=9)
        for ax in axes[:2, col]:
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xticks([])
            ax.set_yticks([])
        ax = axes[2, col]
        ks = sorted(s["bic"])
        ax.plot(ks, [s["bic"][k] for k in ks], marker="o", markersize=3)
        best = min(ks, key=s["bic"].get)
        ax.axvline(best, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("number of components K")
        ax.set_ylabel("BIC (lower is better)")
        ax.set_title(f"BIC chooses K = {best}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(plt, fig, path)
