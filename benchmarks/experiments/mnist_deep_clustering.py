"""Deep clustering of all ten MNIST digits on a CPU (gmmfast.vae.DeepClustering), several seeds.

Protocol (N2D's and DEC's): the pipeline is fitted on all 70,000 MNIST
images (training and test images, labels never given to it); accuracy
(Hungarian matching), NMI and ARI are reported on the 10,000 test images
and on all 70,000. Each seed's result is written as soon as it exists
(``deep_clustering_seed<k>.json``), and a seed already written is not run
again, so an interrupted run resumes where it stopped. Per seed, process CPU
time (all threads) and wall time of every stage are recorded.

For comparison on the same embeddings: k-means (gmmfast's) on the UMAP
embedding, and the Gaussian mixture on the autoencoder's embedding without
UMAP.

    python benchmarks/experiments/mnist_deep_clustering.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from _common import base_parser, load_full_mnist, machine, write_results

from gmmfast import GaussianMixture
from gmmfast.metrics import clustering_scores
from gmmfast.mixture._kmeans import kmeans
from gmmfast.vae import DeepClustering


def run_seed(args, seed: int, X: np.ndarray, y: np.ndarray, n_test: int) -> dict:
    model = DeepClustering(
        n_clusters=10, epochs=args.epochs, random_state=seed, n_threads=args.n_threads, verbose=1
    )
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    model.fit(X)
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    test = slice(len(X) - n_test, None)
    result = {
        "seed": seed,
        "test": clustering_scores(y[test], model.labels_[test]),
        "all": clustering_scores(y, model.labels_),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "stages": model.timings_,
        "epochs_run": model.n_epochs_,
        "best_epoch": model.best_epoch_,
        "best_val_loss": model.best_val_loss_,
        "seconds_per_epoch": model.seconds_per_epoch_,
        "mixture_lower_bound": model.mixture_.lower_bound_,
    }
    # Peers on the same embeddings (labels only to score).
    labels, _ = kmeans(model.embedding_, 10, np.random.RandomState(seed), n_threads=2)
    result["kmeans_on_umap"] = {
        "test": clustering_scores(y[test], labels[test]),
        "all": clustering_scores(y, labels),
    }
    codes = model.encode(X)
    ae_gmm = GaussianMixture(10, n_init=5, init_params="diverse", random_state=seed)
    ae_labels = ae_gmm.fit_predict(codes)
    result["gmm_on_autoencoder"] = {
        "test": clustering_scores(y[test], ae_labels[test]),
        "all": clustering_scores(y, ae_labels),
    }
    return result


def markdown(results: list[dict], args) -> str:
    lines = [
        "# Deep clustering of all ten MNIST digits on a CPU",
        "",
        f"Machine: {machine()}. Command: `python benchmarks/experiments/mnist_deep_clustering.py "
        f"--seeds {' '.join(str(r['seed']) for r in results)} --epochs {args.epochs}`.",
        "",
        "Pipeline: `gmmfast.vae.DeepClustering(n_clusters=10, epochs=%d, random_state=seed)` "
        "fitted on all 70,000 images, no labels (dense autoencoder 784-500-500-2000-10, epoch kept "
        "by held-out reconstruction error; UMAP to 10 dimensions, 20 neighbours, min_dist 0; "
        "full-covariance GaussianMixture, 10 diverse starts, the most likely kept)." % args.epochs,
        "",
        "| seed | test accuracy | test NMI | test ARI | all-70k accuracy | k-means on UMAP (test acc.) "
        "| GMM on autoencoder (test acc.) | CPU min | wall min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['seed']} | {100 * r['test']['accuracy']:.2f}% | {r['test']['nmi']:.3f} | "
            f"{r['test']['ari']:.3f} | {100 * r['all']['accuracy']:.2f}% | "
            f"{100 * r['kmeans_on_umap']['test']['accuracy']:.2f}% | "
            f"{100 * r['gmm_on_autoencoder']['test']['accuracy']:.2f}% | "
            f"{r['cpu_seconds'] / 60:.1f} | {r['wall_seconds'] / 60:.1f} |"
        )
    acc = np.array([r["test"]["accuracy"] for r in results])
    cpu = np.array([r["cpu_seconds"] for r in results]) / 60
    lines += [
        "",
        f"Mean test accuracy {100 * acc.mean():.2f}%, lowest {100 * acc.min():.2f}%, highest "
        f"{100 * acc.max():.2f}%; CPU time per seed {cpu.min():.1f}-{cpu.max():.1f} min "
        "(process time, all threads: training, UMAP, mixture; the peers' extra fits excluded).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    X_train, y_train, X_test, y_test = load_full_mnist(args.mnist_dir)
    X = np.concatenate([X_train, X_test])
    y = np.concatenate([y_train, y_test])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in args.seeds:
        path = out / f"deep_clustering_seed{seed}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
            print(f"seed {seed}: already done ({path})")
            continue
        result = run_seed(args, seed, X, y, len(X_test))
        result["epochs"] = args.epochs
        path.write_text(json.dumps(result, indent=2, default=float) + "\n")
        print(
            f"seed {seed}: test accuracy {result['test']['accuracy']:.4f}, CPU "
            f"{result['cpu_seconds'] / 60:.1f} min",
            flush=True,
        )
        results.append(result)
    write_results(
        args.out,
        "deep_clustering",
        {"machine": machine(), "seeds": results},
        markdown(results, args),
    )


if __name__ == "__main__":
    main()
