"""The demo's clustering section: non-round clusters, a full-covariance mixture against k-means."""

from __future__ import annotations

import time
from typing import Any, Callable

from ..metrics import clustering_scores
from ..mixture import GaussianMixture, k_means, select_mixture
from ..synthetic import NONCIRCULAR_SETTINGS, make_noncircular
from ._figures import figure_clusters

#: Candidates for the number of components in the BIC search.
K_CANDIDATES = range(1, 7)


def cluster_settings(
    n_init: int = 5, seed: int = 0, n_threads: int | None = None
) -> list[dict[str, Any]]:
    """Fit k-means and a full-covariance mixture (defaults but ``n_init``) on each
    :data:`~gmmfast.synthetic.NONCIRCULAR_SETTINGS` draw, and choose K by BIC."""
    results = []
    for name in NONCIRCULAR_SETTINGS:
        X, y = make_noncircular(name, random_state=seed)
        start = time.perf_counter()
        gmm = GaussianMixture(3, n_init=n_init, random_state=seed, n_threads=n_threads).fit(X)
        gmm_seconds = time.perf_counter() - start
        _, labels, _ = k_means(X, 3, random_state=seed, n_threads=n_threads)
        selection = select_mixture(
            X, K_CANDIDATES, n_init=n_init, random_state=seed, n_threads=n_threads
        )
        results.append(
            {
                "name": name,
                "X": X,
                "kmeans_labels": labels,
                "kmeans_ari": clustering_scores(y, labels)["ari"],
                "resp": gmm.predict_proba(X),
                "means": gmm.means_,
                "covariances": gmm.covariances_,
                "gmm_ari": clustering_scores(y, gmm.predict(X))["ari"],
                "gmm_seconds": gmm_seconds,
                "bic": {r["n_components"]: r["bic"] for r in selection.results_},
                "bic_k": selection.best_params_["n_components"],
            }
        )
    return results


def clustering_section(figure: Callable, n_threads: int | None = None) -> list[str]:
    """Report lines (and the figure) of the clustering section."""
    results = cluster_settings(n_threads=n_threads)
    for r in results:
        print(
            f"clustering {r['name']}: mixture ARI {r['gmm_ari']:.3f}, k-means ARI "
            f"{r['kmeans_ari']:.3f}, BIC chooses K={r['bic_k']}"
        )
    lines = [
        "## Clustering clusters that are not round",
        "",
        "k-means cuts space half-way between centres, as if every cluster were a ball of one "
        "size. On three settings where clusters are not (1,500 points each, "
        "`gmmfast.synthetic.make_noncircular(kind, random_state=0)`), a full-covariance "
        "`GaussianMixture(3, n_init=5)` with its default diverse starts against k-means; "
        "the number of components chosen by BIC among K = 1..6 without labels. The figure "
        "colours each point by its responsibilities (blends where clusters overlap) and "
        "draws each component's 2-sigma ellipse.",
        "",
        "| setting | generator (centres; std x, y; shares; linear map) | mixture ARI | k-means ARI "
        "| K by BIC |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s = NONCIRCULAR_SETTINGS[r["name"]]
        generator = (
            f"{s['centers']}; {s['std']}; {[round(v, 2) for v in s['shares']]}; {s['transform']}"
        )
        lines.append(
            f"| {r['name']} | {generator} | {r['gmm_ari']:.3f} | {r['kmeans_ari']:.3f} | "
            f"{r['bic_k']} |"
        )
    lines.append("")
    figure("clustering.png", "clustering", lambda path: figure_clusters(path, results))
    return lines
