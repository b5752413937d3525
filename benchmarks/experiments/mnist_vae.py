"""MNIST through a convolutional VAE: latent-GMM classification, clustering, and VaDE.

Full MNIST (60,000 training, 10,000 test images). Each stage trains on the
training images (80:20 split for early stopping and the best epoch), and
scores on the test images.

    python benchmarks/experiments/mnist_vae.py --stages digits148           # latent 2, digits 1, 4, 8
    python benchmarks/experiments/mnist_vae.py --stages all10 vade          # latent 16, all digits; then VaDE
    python benchmarks/experiments/mnist_vae.py --stages timing              # one epoch per configuration, 1 and 2 threads
    python benchmarks/experiments/mnist_vae.py --stages all10 --epochs 2 --n-train 2000 --out /tmp/smoke   # smoke test

Stages:
  digits148  ConvVAE(latent 2) on the training images of 1, 4 and 8;
             GMMClassifier (full covariances, K per class chosen by held-out
             likelihood from --gmm-k) on the latent means; accuracy on all
             test images of those digits; unsupervised GaussianMixture (K = 3)
             against k-means on the latents (Hungarian accuracy, NMI, ARI).
             Figures: latent space with the classifier's ellipses,
             reconstructions, decoded latent manifold, samples per class,
             GMM versus k-means.
  all10      ConvVAE(latent --latent-dim, default 16) on all digits; the
             latent GMM classifier's accuracy; unsupervised GaussianMixture
             (K = 10, full covariances) clustering accuracy, NMI and ARI,
             next to k-means and a GMM started from the k-means centres
             (with both GMMs' training log-likelihoods). The model is saved
             in --models-dir for the vade stage; --reuse-models evaluates
             the saved one instead of training again.
  vade       VaDE from the all10 model: a diagonal GaussianMixture on its
             latents starts a learnable GMM prior trained jointly with the
             VAE; clustering accuracy, NMI and ARI of argmax q(c | x).
  timing     one epoch of each configuration on --timing-images images with
             1 and 2 torch threads, extrapolated to a full epoch.
Results go to benchmarks/results/mnist_vae.{json,md} and vae_*.png, stage by
stage; models (about 55 MB each) to --models-dir, outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import Timer, base_parser, load_full_mnist, machine, write_results  # noqa: E402

from gmmfast import ConvergenceWarning, GaussianMixture, GMMClassifier  # noqa: E402
from gmmfast.vae import ConvVAE, VaDE, classification_scores, clustering_scores  # noqa: E402
from gmmfast.vae import _plots as vae_plots

TARGETS = {
    "digits148_accuracy": 0.990,
    "all10_accuracy": 0.975,
    "all10_cluster_accuracy": 0.85,
    "vade_cluster_accuracy": 0.945,
}
REFERENCE = {"vade_published_accuracy": 0.9446}
DEFAULT_MODELS = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gmmfast" / "vae-models"
)
SCRIPT = "python benchmarks/experiments/mnist_vae.py"


def vae_for(args, latent_dim: int, epochs: int | None = None) -> ConvVAE:
    return ConvVAE(
        latent_dim,
        channels=tuple(args.channels),
        hidden_units=args.hidden_units,
        beta=args.beta,
        batch_size=args.batch_size,
        epochs=epochs or args.epochs,
        patience=args.patience,
        learning_rate=args.learning_rate,
        random_state=args.seed,
        verbose=args.verbose,
    )


def subsample(X, y, n, seed):
    if n is None or n >= len(X):
        return X, y
    rows = np.sort(np.random.RandomState(seed).choice(len(X), n, replace=False))
    return X[rows], y[rows]


def latent_classifier(args, Z, y) -> GMMClassifier:
    ks = args.gmm_k if len(args.gmm_k) > 1 else args.gmm_k[0]
    return GMMClassifier(
        ks,
        covariance_type="full",
        reg_covar=1e-6,
        selection="heldout",
        random_state=args.seed,
        n_threads=args.n_threads,
    ).fit(Z, y)


def trained_or_reused(args, path: Path, train) -> tuple[ConvVAE, float]:
    """The VAE saved at ``path`` when --reuse-models and it exists, else ``train()`` (then saved);
    with the training seconds (a reused model's are the sum of its epochs)."""
    if args.reuse_models and path.exists():
        vae = ConvVAE.load(path)
        print(f"reusing {path} ({vae.n_epochs_} epochs)", flush=True)
        return vae, float(sum(vae.history_["seconds"]))
    with Timer() as t:
        vae = train()
    vae.save(path)
    return vae, t.seconds


def stage_command(args, stage: str, model, epochs_option: str = "epochs") -> str:
    """The command that reproduces a stage's figures. A model stopped by Ctrl-C
    keeps its best epoch, so its epochs completed reproduce it: they replace
    ``--epochs`` (or ``--vade-epochs``) in the command."""
    options = args.command_options
    if getattr(model, "interrupted_", False):
        options = (
            re.sub(rf" --{epochs_option} \d+", "", options)
            + f" --{epochs_option} {model.n_epochs_}"
        )
    return f"{SCRIPT} --stages {stage}{options}"


def train_row(model, seconds) -> dict:
    return {
        "train_seconds": seconds,
        "epochs_run": model.n_epochs_,
        "best_epoch": model.best_epoch_,
        "seconds_per_epoch": model.seconds_per_epoch_,
        "best_val_loss": model.best_val_loss_,
        "n_train": model.n_train_,
        "n_val": model.n_val_,
        "interrupted": model.interrupted_,
        "device": str(model.device_ if hasattr(model, "device_") else model.vae_.device_),
        "torch_threads": torch.get_num_threads(),
    }


def cluster_row(
    Z_train, Z_test, y_test, k, seed, n_threads
) -> tuple[dict, GaussianMixture, np.ndarray]:
    # k-means starts, as when mnist_vae.md's figures were measured (before 'diverse' became
    # the default); mnist_vae_dense.py uses the diverse starts.
    gm = GaussianMixture(
        k,
        covariance_type="full",
        n_init=10,
        init_params="kmeans",
        max_iter=500,
        random_state=seed,
        n_threads=n_threads,
    ).fit(Z_train)
    clusters = gm.predict(Z_test)
    return clustering_scores(y_test, clusters), gm, clusters


def write_figures(row: dict, figures: dict, command: str, out: Path) -> None:
    """Draw each figure (name -> function of its path) into ``out``; the row records the command behind each."""
    row["figures"] = {name: command for name in figures}
    for name, draw in figures.items():
        print(f"wrote {draw(out / name)}")


def stage_digits148(args, data, results, save):
    X, y, X_test, y_test = data
    digits = [1, 4, 8]
    train, test = np.isin(y, digits), np.isin(y_test, digits)
    X, y = subsample(X[train], y[train], args.n_train, args.seed)
    X_test, y_test = X_test[test], y_test[test]
    print(
        f"digits148: {len(X)} training images, {len(X_test)} test images of the digits 1, 4, 8",
        flush=True,
    )
    with Timer() as t:
        vae = vae_for(args, 2).fit(X)
    vae.save(Path(args.models_dir) / "vae_digits148_latent2.pt")
    Z, Z_test = vae.encode(X), vae.encode(X_test)
    clf = latent_classifier(args, Z, y)
    scores = classification_scores(y_test, clf.predict(Z_test))
    cluster_scores, gm, gm_clusters = cluster_row(Z, Z_test, y_test, 3, args.seed, args.n_threads)
    from sklearn.cluster import KMeans

    km = KMeans(3, n_init=10, random_state=args.seed).fit(Z)
    km_clusters = km.predict(Z_test)
    km_scores = clustering_scores(y_test, km_clusters)
    row = {
        "latent_dim": 2,
        **train_row(vae, t.seconds),
        "classifier_k": clf.n_components_,
        "test_accuracy": scores["accuracy"],
        "macro_precision": scores["precision"],
        "macro_recall": scores["recall"],
        "macro_f1": scores["f1"],
        "n_test": len(X_test),
        "gmm_clustering": cluster_scores,
        "kmeans_clustering": km_scores,
        "history": vae.history_,
    }
    results["digits148"] = row
    print(
        f"digits148: test accuracy {scores['accuracy']:.4f} (target {TARGETS['digits148_accuracy']}); "
        f"GMM clustering {cluster_scores}, k-means {km_scores}",
        flush=True,
    )
    cmd = stage_command(args, "digits148", vae)
    out = Path(args.out)
    figs = {
        "vae_148_latent.png": lambda p: vae_plots.plot_latent_space(
            p,
            Z_test,
            y_test,
            clf,
            f"digits 1, 4, 8: test latent means and the latent GMM classifier "
            f"(test accuracy {scores['accuracy']:.2%})",
        ),
        "vae_148_reconstructions.png": lambda p: vae_plots.plot_reconstructions(
            p, X_test[::97][:12], vae.reconstruct(X_test[::97][:12])
        ),
        "vae_148_manifold.png": lambda p: vae_plots.plot_manifold(p, vae, n=20, latents=Z),
        "vae_148_samples.png": lambda p: vae_plots.plot_images(
            p,
            [vae.sample(12, random_state=args.seed)]
            + [vae.sample(12, gmm=clf, component=d, random_state=args.seed + d) for d in digits],
            ["prior N(0, I)"] + [f"GMM of digit {d}" for d in digits],
            "generated digits",
        ),
        "vae_148_gmm_vs_kmeans.png": lambda p: vae_plots.plot_gmm_vs_kmeans(
            p,
            Z_test,
            y_test,
            gm,
            gm_clusters,
            km.cluster_centers_,
            km_clusters,
            {"GMM": cluster_scores, "k-means": km_scores},
        ),
    }
    write_figures(row, figs, cmd, out)
    save()


def stage_all10(args, data, results, save):
    X, y, X_test, y_test = data
    X, y = subsample(X, y, args.n_train, args.seed)
    print(f"all10: {len(X)} training images, latent size {args.latent_dim}", flush=True)
    path = Path(args.models_dir) / f"vae_all10_latent{args.latent_dim}.pt"
    vae, seconds = trained_or_reused(args, path, lambda: vae_for(args, args.latent_dim).fit(X))
    Z, Z_test = vae.encode(X), vae.encode(X_test)
    clf = latent_classifier(args, Z, y)
    scores = classification_scores(y_test, clf.predict(Z_test))
    cluster_scores, gm, _ = cluster_row(Z, Z_test, y_test, 10, args.seed, args.n_threads)
    # Other unsupervised partitions of the same latents, and how likely the GMM finds each.
    from sklearn.cluster import KMeans

    km = KMeans(10, n_init=10, random_state=args.seed).fit(Z)
    from_km = GaussianMixture(
        10,
        covariance_type="full",
        means_init=km.cluster_centers_,
        max_iter=500,
        random_state=args.seed,
        n_threads=args.n_threads,
    ).fit(Z)
    row = {
        "latent_dim": args.latent_dim,
        **train_row(vae, seconds),
        "classifier_k": clf.n_components_,
        "test_accuracy": scores["accuracy"],
        "macro_precision": scores["precision"],
        "macro_recall": scores["recall"],
        "macro_f1": scores["f1"],
        "n_test": len(X_test),
        "gmm_clustering": cluster_scores,
        "gmm_train_log_likelihood": gm.score(Z),
        "kmeans_clustering": clustering_scores(y_test, km.predict(Z_test)),
        "gmm_from_kmeans_clustering": clustering_scores(y_test, from_km.predict(Z_test)),
        "gmm_from_kmeans_train_log_likelihood": from_km.score(Z),
        "history": vae.history_,
    }
    results["all10"] = row
    print(
        f"all10: test accuracy {scores['accuracy']:.4f} (target {TARGETS['all10_accuracy']}); "
        f"GMM clustering {cluster_scores} (target accuracy {TARGETS['all10_cluster_accuracy']})",
        flush=True,
    )
    cmd = stage_command(args, "all10", vae)
    out = Path(args.out)
    figs = {
        "vae_all10_latent.png": lambda p: vae_plots.plot_latent_space(
            p,
            Z_test,
            y_test,
            clf,
            f"all digits, latent size {args.latent_dim} (first two principal axes): test "
            f"latent means and the latent GMM classifier",
        ),
        "vae_all10_reconstructions.png": lambda p: vae_plots.plot_reconstructions(
            p, X_test[:12], vae.reconstruct(X_test[:12])
        ),
        "vae_all10_samples.png": lambda p: vae_plots.plot_images(
            p,
            [vae.sample(10, gmm=clf, component=d, random_state=args.seed + d) for d in range(10)],
            [f"digit {d}" for d in range(10)],
            "generated from each class's latent GMM",
        ),
    }
    write_figures(row, figs, cmd, out)
    save()


def stage_vade(args, data, results, save):
    X, y, X_test, y_test = data
    X, y = subsample(X, y, args.n_train, args.seed)
    path = Path(args.models_dir) / f"vae_all10_latent{args.latent_dim}.pt"
    if not path.exists():
        raise SystemExit(f"{path}: run --stages all10 first (the vade stage starts from its model)")
    vae = ConvVAE.load(path)
    print(
        f"vade: from {path}, {len(X)} training images, {args.vade_epochs} epochs at most",
        flush=True,
    )
    with Timer() as t:
        model = VaDE(
            vae,
            n_clusters=10,
            epochs=args.vade_epochs,
            learning_rate=args.vade_learning_rate,
            batch_size=args.batch_size,
            patience=args.patience,
            random_state=args.seed,
            verbose=args.verbose,
        ).fit(X)
    model.save(Path(args.models_dir) / f"vade_latent{args.latent_dim}.pt")
    Z_test = model.encode(X_test)
    scores = clustering_scores(y_test, model.mixture_.predict(Z_test))
    init = clustering_scores(y_test, model.init_mixture_.predict(vae.encode(X_test)))
    row = {
        "latent_dim": args.latent_dim,
        **train_row(model, t.seconds),
        "clustering": scores,
        "initial_diag_gmm_clustering": init,
        "weights": model.weights_.tolist(),
        "history": model.history_,
    }
    results["vade"] = row
    print(
        f"vade: clustering {scores} (target accuracy {TARGETS['vade_cluster_accuracy']}; "
        f"diagonal GMM it started from: {init})",
        flush=True,
    )
    cmd = stage_command(args, "vade", model, "vade-epochs")
    out = Path(args.out)
    order = np.argsort(-model.weights_)
    figs = {
        "vae_vade_samples.png": lambda p: vae_plots.plot_images(
            p,
            [model.sample(10, component=int(k), random_state=args.seed + int(k)) for k in order],
            [f"cluster {k}" for k in order],
            "VaDE: generated from each cluster of the learned prior",
        ),
        "vae_vade_latent.png": lambda p: vae_plots.plot_latent_space(
            p,
            Z_test,
            y_test,
            model.mixture_,
            "VaDE latent space (first two principal axes) and its prior",
        ),
    }
    write_figures(row, figs, cmd, out)
    save()


def stage_timing(args, data, results, save):
    """One epoch of each configuration on a subset, 1 and 2 threads, scaled to a full epoch."""
    X, y = data[0], data[1]
    n = args.timing_images
    full = {
        "digits148 (latent 2)": int(0.8 * np.isin(y, [1, 4, 8]).sum()),
        "all10 (latent 16)": int(0.8 * len(X)),
        "vade (latent 16)": int(0.8 * len(X)),
    }
    rows = results.setdefault("timing", {})
    Xs, _ = subsample(X, y, n, args.seed)
    for threads in args.timing_threads:
        for name, n_full in full.items():  # each model sets and restores torch's threads itself
            latent = 2 if "148" in name else args.latent_dim
            vae = vae_for(args, latent, epochs=1)
            vae.verbose, vae.n_threads = 0, threads
            if name.startswith("vade"):
                pre = vae_for(args, latent, epochs=1).fit(Xs[:200])
                vae = VaDE(
                    pre,
                    n_clusters=10,
                    epochs=1,
                    batch_size=args.batch_size,
                    random_state=args.seed,
                    n_threads=threads,
                )
            vae.fit(Xs)
            # the same 80:20 split in the subset and in full, so the epoch (training and validation) scales
            est = vae.history_["seconds"][0] * n_full / vae.n_train_
            rows[f"{name}, {threads} thread(s)"] = {
                "measured_seconds": vae.history_["seconds"][0],
                "images": len(Xs),
                "estimated_full_epoch_seconds": est,
                "full_epoch_train_images": n_full,
            }
            print(
                f"timing {name}, {threads} thread(s): {vae.history_['seconds'][0]:.1f} s for {len(Xs)} images -> "
                f"~{est:.0f} s per full epoch ({n_full} training images)",
                flush=True,
            )
            save()


def dense_digits148_lines(out: str | os.PathLike | None, pct) -> list[str]:
    """The digits-1-4-8 rows of mnist_vae_dense.json (the dense VAE, label-free selection), if written."""
    path = Path(out or ".") / "mnist_vae_dense.json"
    if not path.exists():
        return []
    stage = json.loads(path.read_text()).get("digits148", {})
    lines = []
    for seed, key in sorted(stage.get("selected", {}).items()):
        r = stage["runs"][key]
        g, k = r["gmm"][r["icl_covariance_type"]], r["kmeans"]
        lines += [
            f"| after, seed {seed}: dense VAE, beta {r['beta']:g} (chosen by validation ELBO), GMM "
            f"{r['icl_covariance_type']} (by ICL) on the {r.get('representation', 'latent means')} "
            f"(by least responsibility entropy): accuracy / NMI / ARI | "
            f"**{pct(g['accuracy'])}** / {g['nmi']:.3f} / {g['ari']:.3f} | 97.00% |",
            f"| after, seed {seed}: k-means on the same latents | {pct(k['accuracy'])} / "
            f"{k['nmi']:.3f} / {k['ari']:.3f} | |",
        ]
    if lines:
        lines.append(
            f"| after: command (all rows, every beta: mnist_vae_dense.md) | `{stage.get('command')}` | |"
        )
    return lines


def markdown(results, out: str | os.PathLike | None = None) -> str:
    m = results.get("machine", {})
    lines = [
        "# MNIST through a convolutional VAE",
        "",
        f"Machine: {m.get('cores')} cores, {m.get('cpu')}, {m.get('date')}; torch {results.get('torch')}.",
        "",
    ]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    if "digits148" in results:
        r = results["digits148"]
        lines += [
            "## Digits 1, 4, 8, latent size 2",
            "",
            "| | value | target |",
            "|---|---|---|",
            f"| latent-GMM classifier, test accuracy ({r['n_test']} images) | **{pct(r['test_accuracy'])}** | "
            f"{pct(TARGETS['digits148_accuracy'])} |",
            f"| macro precision / recall / F1 | {pct(r['macro_precision'])} / {pct(r['macro_recall'])} / "
            f"{pct(r['macro_f1'])} | |",
            f"| before: unsupervised GMM (K = 3, full): accuracy / NMI / ARI | {pct(r['gmm_clustering']['accuracy'])} / "
            f"{r['gmm_clustering']['nmi']:.3f} / {r['gmm_clustering']['ari']:.3f} | |",
            f"| before: k-means (K = 3): accuracy / NMI / ARI | {pct(r['kmeans_clustering']['accuracy'])} / "
            f"{r['kmeans_clustering']['nmi']:.3f} / {r['kmeans_clustering']['ari']:.3f} | |",
            f"| training (the convolutional VAE of the rows above) | {r['epochs_run']} epochs (best "
            f"{r['best_epoch']}), {r['seconds_per_epoch']:.0f} s per epoch, {r['train_seconds'] / 60:.1f} min, "
            f"{r['torch_threads']} thread(s) | |",
            *dense_digits148_lines(out, pct),
            "",
        ]
    if "all10" in results:
        r = results["all10"]
        c = r["gmm_clustering"]
        lines += [
            f"## All ten digits, latent size {r['latent_dim']}",
            "",
            "| | value | target |",
            "|---|---|---|",
            f"| latent-GMM classifier, test accuracy | **{pct(r['test_accuracy'])}** | {pct(TARGETS['all10_accuracy'])} |",
            f"| macro precision / recall / F1 | {pct(r['macro_precision'])} / {pct(r['macro_recall'])} / "
            f"{pct(r['macro_f1'])} | |",
            f"| unsupervised GMM (K = 10): accuracy / NMI / ARI | **{pct(c['accuracy'])}** / {c['nmi']:.3f} / "
            f"{c['ari']:.3f} | {pct(TARGETS['all10_cluster_accuracy'])} |",
            *(
                [
                    f"| k-means (K = 10): accuracy / NMI / ARI | {pct(k['accuracy'])} / {k['nmi']:.3f} / "
                    f"{k['ari']:.3f} | |",
                    f"| GMM started from the k-means centres: accuracy / NMI / ARI | {pct(g['accuracy'])} / "
                    f"{g['nmi']:.3f} / {g['ari']:.3f} | |",
                    f"| mean training log-likelihood: GMM (n_init 10) / GMM from k-means | "
                    f"{r['gmm_train_log_likelihood']:.3f} / {r['gmm_from_kmeans_train_log_likelihood']:.3f} | |",
                ]
                if (k := r.get("kmeans_clustering")) and (g := r.get("gmm_from_kmeans_clustering"))
                else []
            ),
            f"| training | {r['epochs_run']} epochs (best {r['best_epoch']}), {r['seconds_per_epoch']:.0f} s per "
            f"epoch, {r['train_seconds'] / 60:.1f} min, {r['torch_threads']} thread(s) | |",
            "",
        ]
    if "vade" in results:
        r = results["vade"]
        c, i = r["clustering"], r["initial_diag_gmm_clustering"]
        lines += [
            "## VaDE-style joint training (from the all10 model)",
            "",
            "| | accuracy | NMI | ARI |",
            "|---|---|---|---|",
            f"| VaDE, argmax q(c given x) | **{pct(c['accuracy'])}** | {c['nmi']:.3f} | {c['ari']:.3f} |",
            f"| the diagonal GMM it started from | {pct(i['accuracy'])} | {i['nmi']:.3f} | {i['ari']:.3f} |",
            f"| target / published VaDE | {pct(TARGETS['vade_cluster_accuracy'])} / "
            f"{pct(REFERENCE['vade_published_accuracy'])} | | |",
            "",
            f"Training: {r['epochs_run']} epochs (best {r['best_epoch']}), {r['seconds_per_epoch']:.0f} s per "
            f"epoch, {r['train_seconds'] / 60:.1f} min.",
            "",
        ]
    if "timing" in results:
        lines += [
            "## Seconds per epoch",
            "",
            "| configuration | measured | estimated full epoch |",
            "|---|---|---|",
        ]
        for name, r in results["timing"].items():
            lines.append(
                f"| {name} | {r['measured_seconds']:.1f} s on {r['images']} images | "
                f"{r['estimated_full_epoch_seconds']:.0f} s ({r['full_epoch_train_images']} training images) |"
            )
        lines.append("")
    figures = {}
    for stage in ("digits148", "all10", "vade"):
        figures.update(results.get(stage, {}).get("figures", {}))
    if figures:
        lines += (
            ["## Figures", ""] + [f"* `{name}`: `{cmd}`" for name, cmd in figures.items()] + [""]
        )
    lines += ["Settings per stage are in mnist_vae.json.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--stages",
        nargs="+",
        default=["digits148", "all10", "vade"],
        choices=["digits148", "all10", "vade", "timing"],
    )
    parser.add_argument(
        "--latent-dim", type=int, default=16, help="latent size of all10 and vade (default 16)"
    )
    parser.add_argument(
        "--epochs", type=int, default=100, help="most VAE epochs (early stopping: --patience)"
    )
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--vade-epochs", type=int, default=50)
    parser.add_argument("--vade-learning-rate", type=float, default=5e-4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 128, 256])
    parser.add_argument("--hidden-units", type=int, default=512)
    parser.add_argument(
        "--gmm-k",
        type=int,
        nargs="+",
        default=[1, 2, 3, 5],
        help="K per class of the latent classifier (several: chosen by held-out likelihood)",
    )
    parser.add_argument(
        "--n-train", type=int, default=None, help="train on a random subset (smoke tests)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads (default: torch's, all cores)",
    )
    parser.add_argument("--timing-images", type=int, default=1280)
    parser.add_argument("--timing-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--reuse-models",
        action="store_true",
        help="all10: evaluate the VAE already saved in --models-dir instead of training one",
    )
    parser.add_argument(
        "--models-dir",
        default=str(DEFAULT_MODELS),
        help=f"where models go (default {DEFAULT_MODELS})",
    )
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args()
    # the options given that change results, for the commands written next to each figure
    changed = [
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if k
        not in (
            "stages",
            "out",
            "mnist_dir",
            "models_dir",
            "reuse_models",
            "verbose",
            "n_threads",
            "torch_threads",
        )
        and v != parser.get_default(k)
    ]
    args.command_options = "".join(" " + c for c in changed)
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    Path(args.models_dir).mkdir(parents=True, exist_ok=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)

    data = load_full_mnist(args.mnist_dir)
    json_path = Path(args.out) / "mnist_vae.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results["machine"] = machine()
    results["torch"] = torch.__version__
    results["targets"] = TARGETS
    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("out", "mnist_dir", "stages", "models_dir", "command_options")
    }
    for stage in args.stages:
        results.setdefault("stage_settings", {})[stage] = settings

    def save() -> None:
        write_results(args.out, "mnist_vae", results, markdown(results, args.out))

    stages = {
        "timing": stage_timing,
        "digits148": stage_digits148,
        "all10": stage_all10,
        "vade": stage_vade,
    }
    for stage in args.stages:
        start = time.perf_counter()
        stages[stage](args, data, results, save)
        print(f"stage {stage} done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    save()


if __name__ == "__main__":
    main()
