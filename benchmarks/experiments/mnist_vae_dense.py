"""MNIST through the dense (DEC / VaDE) VAE: label-free latent clustering of digits 1, 4, 8, and VaDE.

    python benchmarks/experiments/mnist_vae_dense.py --stages digits148     # latent 2, digits 1, 4, 8
    python benchmarks/experiments/mnist_vae_dense.py --stages vade          # all ten digits, dense VaDE
    python benchmarks/experiments/mnist_vae_dense.py --stages digits148 --seeds 0 --betas 1 --epochs 1 --n-train 2000 --out /tmp/smoke

Stages:
  digits148  For each seed and each KL weight beta in --betas:
             ConvVAE(architecture='dense', latent_dim=2) on the training
             images of 1, 4 and 8 (80:20 split; best validation epoch kept).
             Two representations of the training images' latent means z:
             z itself, and its direction z / |z| (the N(0, I) prior packs
             every class around the origin: the class is in the direction,
             the distance from the origin is how typical the digit is).
             On each: GaussianMixture (K = 3; full, tied, diag, spherical
             covariances; n_init 10, the default diverse starts); k-means
             (K = 3, n_init 10) on both for comparison.
             Label-free selection, per trained VAE:
               * the covariance type by ICL (BIC plus twice the entropy of
                 the responsibilities: the classification likelihood of
                 Biernacki et al., 2000), which, unlike BIC, charges
                 components that overlap -- a dense core inside a broad halo;
               * the representation by the least mean entropy of the
                 responsibilities (the part of ICL that does not depend on
                 the space's scale: BIC values of different spaces are not
                 comparable);
             and per seed, beta by the validation negative ELBO (beta = 1:
             the VAE's own likelihood bound, on the held-out 20%); the
             beta the least entropy would choose is recorded too.
             Labels only score: accuracy after Hungarian matching, NMI and
             ARI on all 3,091 test images of those digits, for every row.
  vade       ConvVAE(architecture='dense', latent --latent-dim) pretrained
             --pretrain-epochs epochs on all training images, then VaDE
             (K = 10) --vade-epochs epochs; clustering accuracy, NMI, ARI
             on the 10,000 test images, with the minutes taken.
Results: benchmarks/results/mnist_vae_dense.{json,md} and vae_dense_*.png;
models to --models-dir, outside the repository.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import Timer, base_parser, load_full_mnist, machine, write_results  # noqa: E402

from gmmfast import ConvergenceWarning, GaussianMixture  # noqa: E402
from gmmfast.vae import ConvVAE, VaDE, clustering_scores  # noqa: E402
from gmmfast.vae import _plots as vae_plots  # noqa: E402
from gmmfast.vae._nets import gaussian_kl, reconstruction_loss  # noqa: E402

DIGITS = [1, 4, 8]
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
DEFAULT_MODELS = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gmmfast" / "vae-models"
)
SCRIPT = "python benchmarks/experiments/mnist_vae_dense.py"


def split(X, seed, fraction=0.2):
    order = np.random.RandomState(seed).permutation(len(X))
    n_val = int(round(fraction * len(X)))
    return X[order[n_val:]], X[order[:n_val]]


@torch.no_grad()
def negative_elbo(vae: ConvVAE, X: np.ndarray, seed: int) -> float:
    """Mean negative ELBO (beta = 1: reconstruction + KL, nats) of ``X``, one latent draw per image."""
    net = vae.network_.eval()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for b in range(0, len(X), 1024):
        x = torch.from_numpy(np.ascontiguousarray(X[b : b + 1024], dtype=np.float32))
        x = x.reshape(len(x), 1, *vae.image_shape_)
        mu, log_sigma = net.encoder(x)
        z = mu + torch.randn(mu.shape, generator=gen) * log_sigma.exp()
        total += float((reconstruction_loss(net.decoder(z), x) + gaussian_kl(mu, log_sigma)).sum())
    return total / len(X)


def entropy(resp: np.ndarray) -> float:
    """Mean entropy (nats) of the rows of a responsibility matrix."""
    return float(-(resp * np.log(np.clip(resp, 1e-300, None))).sum(1).mean())


def directions(Z: np.ndarray) -> np.ndarray:
    """z / |z| (a zero row stays zero)."""
    norm = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norm > 0, norm, 1.0)


REPRESENTATIONS = {"latent means": lambda Z: Z, "directions": directions}


def mixtures(Z, Z_test, y_test, seed, n_threads):
    """GMMs of every covariance type on Z (ICL, BIC, entropy), scored on the test latents."""
    rows = {}
    models = {}
    for cov in COVARIANCE_TYPES:
        gm = GaussianMixture(
            3, covariance_type=cov, n_init=10, max_iter=500, random_state=seed, n_threads=n_threads
        ).fit(Z)
        resp = gm.predict_proba(Z)
        bic = gm.bic(Z)
        h = entropy(resp)
        rows[cov] = {
            "bic": bic,
            "mean_entropy": h,
            "icl": bic + 2.0 * len(Z) * h,
            "train_log_likelihood": gm.score(Z),
            **clustering_scores(y_test, gm.predict(Z_test)),
        }
        models[cov] = gm
    return rows, models


def kmeans_row(Z, Z_test, y_test, seed):
    from sklearn.cluster import KMeans

    km = KMeans(3, n_init=10, random_state=seed).fit(Z)
    clusters = km.predict(Z_test)
    return clustering_scores(y_test, clusters), km, clusters


def stage_digits148(args, data, results, save):
    X, y, X_test, y_test = data
    X, y = X[np.isin(y, DIGITS)], y[np.isin(y, DIGITS)]
    if args.n_train:
        X = X[np.random.RandomState(0).permutation(len(X))[: args.n_train]]
    X_test, y_test = X_test[np.isin(y_test, DIGITS)], y_test[np.isin(y_test, DIGITS)]
    stage = results.setdefault("digits148", {"runs": {}})
    for seed in args.seeds:
        X_train, X_val = split(X, seed)
        for beta in args.betas:
            key = f"seed {seed}, beta {beta:g}"
            path = Path(args.models_dir) / f"dense_vae_148_seed{seed}_beta{beta:g}.pt"
            if args.reuse_models and path.exists():
                vae = ConvVAE.load(path)
                seconds = float(sum(vae.history_["seconds"]))
            else:
                with Timer() as t:
                    vae = ConvVAE(
                        2,
                        architecture="dense",
                        beta=beta,
                        epochs=args.epochs,
                        patience=args.patience,
                        learning_rate=args.learning_rate,
                        batch_size=args.batch_size,
                        n_threads=args.torch_threads,
                        random_state=seed,
                        verbose=args.verbose,
                    ).fit(X_train, validation_images=X_val)
                vae.save(path)
                seconds = t.seconds
            Z, Z_test = vae.encode(X_train), vae.encode(X_test)
            reps = {}
            for rep_name, transform in REPRESENTATIONS.items():
                R, R_test = transform(Z), transform(Z_test)
                gmms, _ = mixtures(R, R_test, y_test, seed, args.n_threads)
                cov = min(gmms, key=lambda c: gmms[c]["icl"])
                reps[rep_name] = {
                    "gmm": gmms,
                    "icl_covariance_type": cov,
                    "entropy": gmms[cov]["mean_entropy"],
                    "kmeans": kmeans_row(R, R_test, y_test, seed)[0],
                }
            rep_chosen = min(reps, key=lambda r: reps[r]["entropy"])
            gmms, chosen = reps[rep_chosen]["gmm"], reps[rep_chosen]["icl_covariance_type"]
            km_scores = reps["latent means"]["kmeans"]
            stage["runs"][key] = {
                "seed": seed,
                "beta": beta,
                "train_seconds": seconds,
                "epochs_run": vae.n_epochs_,
                "best_epoch": vae.best_epoch_,
                "seconds_per_epoch": vae.seconds_per_epoch_,
                "val_negative_elbo": negative_elbo(vae, X_val, seed),
                "representations": reps,
                "representation": rep_chosen,
                "gmm": gmms,
                "icl_covariance_type": chosen,
                "selected_entropy": gmms[chosen]["mean_entropy"],
                "kmeans": km_scores,
                "kmeans_directions": reps["directions"]["kmeans"],
                "n_train": len(X_train),
                "n_test": len(X_test),
            }
            print(
                f"digits148 {key}: {vae.n_epochs_} epochs, {seconds / 60:.1f} min; GMM on {rep_chosen} "
                f"({chosen}, by ICL) accuracy {gmms[chosen]['accuracy']:.4f}; k-means "
                f"{km_scores['accuracy']:.4f}; entropy {gmms[chosen]['mean_entropy']:.4f}",
                flush=True,
            )
            save()
    select_digits148(args, stage, data)
    save()


def select_digits148(args, stage, data):
    """Per seed: beta with the best validation ELBO (labels unused); the least-entropy choice noted."""
    stage["selected"], stage["selected_by_entropy"] = {}, {}
    for seed in sorted({r["seed"] for r in stage["runs"].values()}):
        runs = {k: r for k, r in stage["runs"].items() if r["seed"] == seed}
        stage["selected"][str(seed)] = min(runs, key=lambda k: runs[k]["val_negative_elbo"])
        stage["selected_by_entropy"][str(seed)] = min(
            runs, key=lambda k: runs[k]["selected_entropy"]
        )
    stage["command"] = f"{SCRIPT} --stages digits148{args.command_options}"
    if args.no_figure or not stage["selected"]:
        return
    key = stage["selected"][str(min(args.seeds))]
    run = stage["runs"][key]
    X, y, X_test, y_test = data
    X, y = X[np.isin(y, DIGITS)], y[np.isin(y, DIGITS)]
    if args.n_train:
        X = X[np.random.RandomState(0).permutation(len(X))[: args.n_train]]
    X_test, y_test = X_test[np.isin(y_test, DIGITS)], y_test[np.isin(y_test, DIGITS)]
    vae = ConvVAE.load(
        Path(args.models_dir) / f"dense_vae_148_seed{run['seed']}_beta{run['beta']:g}.pt"
    )
    X_train, _ = split(X, run["seed"])
    Z, Z_test = vae.encode(X_train), vae.encode(X_test)
    transform = REPRESENTATIONS[run["representation"]]
    _, models = mixtures(transform(Z), transform(Z_test), y_test, run["seed"], args.n_threads)
    gm = models[run["icl_covariance_type"]]
    km_scores, km, km_clusters = kmeans_row(Z, Z_test, y_test, run["seed"])
    path = Path(args.out) / "vae_dense_148_gmm_vs_kmeans.png"
    vae_plots.plot_gmm_vs_kmeans(  # the GMM's ellipses live in its space (the unit circle for directions)
        path,
        Z_test,
        y_test,
        gm,
        gm.predict(transform(Z_test)),
        km.cluster_centers_,
        km_clusters,
        {"GMM": run["gmm"][run["icl_covariance_type"]], "k-means": km_scores},
        gmm_title=f"GMM on the {run['representation']}"
        + (
            " z / |z| (ellipses on the unit circle)"
            if run["representation"] == "directions"
            else ""
        ),
    )
    stage["figure"] = path.name
    print(f"wrote {path}")


def stage_vade(args, data, results, save):
    X, y, X_test, y_test = data
    if args.n_train:
        X = X[np.random.RandomState(0).permutation(len(X))[: args.n_train]]
    seed = args.seeds[0]
    X_train, X_val = split(X, seed)
    with Timer() as t_pre:
        vae = ConvVAE(
            args.latent_dim,
            architecture="dense",
            beta=1.0,
            epochs=args.pretrain_epochs,
            patience=args.patience,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            n_threads=args.torch_threads,
            random_state=seed,
            verbose=args.verbose,
        ).fit(X_train, validation_images=X_val)
    vae.save(Path(args.models_dir) / f"dense_vae_all10_latent{args.latent_dim}_seed{seed}.pt")
    with Timer() as t_vade:
        model = VaDE(
            vae,
            n_clusters=10,
            epochs=args.vade_epochs,
            learning_rate=args.vade_learning_rate,
            batch_size=args.batch_size,
            patience=args.patience,
            n_threads=args.torch_threads,
            random_state=seed,
            verbose=args.verbose,
        ).fit(X_train, validation_images=X_val)
    model.save(Path(args.models_dir) / f"dense_vade_latent{args.latent_dim}_seed{seed}.pt")
    scores = clustering_scores(y_test, model.predict(X_test))
    init = clustering_scores(y_test, model.init_mixture_.predict(vae.encode(X_test)))
    row = {
        "seed": seed,
        "latent_dim": args.latent_dim,
        "n_train": len(X_train),
        "pretrain_epochs": vae.n_epochs_,
        "pretrain_seconds": t_pre.seconds,
        "pretrain_seconds_per_epoch": vae.seconds_per_epoch_,
        "vade_epochs": model.n_epochs_,
        "vade_best_epoch": model.best_epoch_,
        "vade_seconds": t_vade.seconds,
        "vade_seconds_per_epoch": model.seconds_per_epoch_,
        "clustering": scores,
        "initial_diag_gmm_clustering": init,
        "command": f"{SCRIPT} --stages vade{args.command_options}",
    }
    results["vade"] = row  # the latest; every run, by its epochs, in vade_runs
    runs = results.setdefault("vade_runs", {})
    runs[
        f"seed {seed}, latent {args.latent_dim}, {args.pretrain_epochs} + {args.vade_epochs} epochs"
    ] = row
    print(f"vade: {scores} (started from {init})", flush=True)
    save()


def markdown(results) -> str:
    m = results.get("machine", {})
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    lines = [
        "# MNIST through the dense (DEC / VaDE) VAE",
        "",
        f"Machine: {m.get('cores')} cores, {m.get('cpu')}, {m.get('date')}; torch {results.get('torch')}; "
        f"torch threads {results.get('torch_threads')}.",
        "",
    ]
    if "digits148" in results:
        st = results["digits148"]
        lines += [
            "## Digits 1, 4, 8, latent size 2: clustering the latent means (K = 3)",
            "",
            f"Command: `{st.get('command', SCRIPT + ' --stages digits148')}`",
            "",
            "Scores on the 3,091 test images of those digits. Per trained VAE, the GMM's",
            "covariance type is chosen by ICL on each representation (latent means z, directions",
            "z / |z|) and the representation by the least mean responsibility entropy; per seed, beta",
            "by the validation negative ELBO (marked **selected**; the least-entropy choice is marked",
            "*entropy*). Labels score only. Entropy in nats; negative ELBO per image (beta = 1).",
            "",
            "| seed | beta | epochs | min | val. -ELBO | chosen GMM | its acc. / NMI / ARI | "
            "full GMM on z: acc. | k-means on z: acc. / NMI / ARI | k-means on directions: acc. | entropy | |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        selected = set(st.get("selected", {}).values())
        by_entropy = set(st.get("selected_by_entropy", {}).values())
        for key, r in st["runs"].items():
            g, k = r["gmm"][r["icl_covariance_type"]], r["kmeans"]
            full = r.get("representations", {}).get("latent means", r)["gmm"]["full"]
            kd = r.get("kmeans_directions")
            mark = " ".join(
                m
                for m, on in (("**selected**", key in selected), ("*entropy*", key in by_entropy))
                if on
            )
            lines.append(
                f"| {r['seed']} | {r['beta']:g} | {r['epochs_run']} (best {r['best_epoch']}) | "
                f"{r['train_seconds'] / 60:.1f} | {r['val_negative_elbo']:.1f} | "
                f"{r.get('representation', 'latent means')}, {r['icl_covariance_type']} | "
                f"{pct(g['accuracy'])} / {g['nmi']:.3f} / {g['ari']:.3f} | {pct(full['accuracy'])} | "
                f"{pct(k['accuracy'])} / {k['nmi']:.3f} / {k['ari']:.3f} | "
                f"{pct(kd['accuracy']) if kd else ''} | {r['selected_entropy']:.4f} | {mark} |"
            )
        sel = [st["runs"][k] for k in st.get("selected", {}).values()]
        if sel:
            accs = [r["gmm"][r["icl_covariance_type"]]["accuracy"] for r in sel]
            kms = [r["kmeans"]["accuracy"] for r in sel]
            lines += [
                "",
                f"Selected, over {len(sel)} seed(s): GMM accuracy {pct(np.mean(accs))} (from "
                f"{pct(min(accs))} to {pct(max(accs))}); k-means on the same latents "
                f"{pct(np.mean(kms))} (from {pct(min(kms))} to {pct(max(kms))}).",
            ]
        lines.append("")
        if st.get("figure"):
            lines += [f"Figure: `{st['figure']}` (the selected model of the first seed).", ""]
    for r in results.get(
        "vade_runs", {"latest": results["vade"]} if "vade" in results else {}
    ).values():
        c, i = r["clustering"], r["initial_diag_gmm_clustering"]
        lines += [
            f"## VaDE with the dense encoder, all ten digits, latent size {r['latent_dim']}",
            "",
            f"Command: `{r['command']}`",
            "",
            "| | accuracy | NMI | ARI |",
            "|---|---|---|---|",
            f"| VaDE, argmax q(c given x) | **{pct(c['accuracy'])}** | {c['nmi']:.3f} | {c['ari']:.3f} |",
            f"| the diagonal GMM it started from | {pct(i['accuracy'])} | {i['nmi']:.3f} | {i['ari']:.3f} |",
            "",
            f"Pretraining: {r['pretrain_epochs']} epochs, {r['pretrain_seconds'] / 60:.1f} min "
            f"({r['pretrain_seconds_per_epoch']:.0f} s per epoch); VaDE: {r['vade_epochs']} epochs "
            f"(best {r['vade_best_epoch']}), {r['vade_seconds'] / 60:.1f} min "
            f"({r['vade_seconds_per_epoch']:.0f} s per epoch); {r['n_train']} training images.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["digits148"], choices=["digits148", "vade"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.25, 0.05])
    parser.add_argument("--epochs", type=int, default=30, help="most VAE epochs (digits148)")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--latent-dim", type=int, default=10, help="latent size of the vade stage")
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--vade-epochs", type=int, default=10)
    parser.add_argument("--vade-learning-rate", type=float, default=5e-4)
    parser.add_argument("--n-train", type=int, default=None, help="a subset (smoke tests)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--reuse-models", action="store_true")
    parser.add_argument("--no-figure", action="store_true")
    parser.add_argument("--models-dir", default=str(DEFAULT_MODELS))
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args()
    changed = [
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if k not in ("stages", "out", "mnist_dir", "models_dir", "reuse_models", "verbose")
        and v != parser.get_default(k)
    ]
    args.command_options = "".join(" " + c for c in changed)
    warnings.simplefilter("ignore", ConvergenceWarning)
    torch.set_num_threads(args.torch_threads)
    Path(args.models_dir).mkdir(parents=True, exist_ok=True)
    data = load_full_mnist(args.mnist_dir)
    json_path = Path(args.out) / "mnist_vae_dense.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results.update(machine=machine(), torch=torch.__version__, torch_threads=args.torch_threads)
    for stage in args.stages:
        results.setdefault("stage_settings", {})[stage] = {
            k: v for k, v in vars(args).items() if k not in ("out", "mnist_dir", "models_dir")
        }

    def save() -> None:
        write_results(args.out, "mnist_vae_dense", results, markdown(results))

    for stage in args.stages:
        start = time.perf_counter()
        {"digits148": stage_digits148, "vade": stage_vade}[stage](args, data, results, save)
        print(f"stage {stage} done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
