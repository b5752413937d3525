"""EPLL denoising of a natural grayscale image against NL-means (scikit-image).

An 8 x 8 patch GMM (mean-removed patches, as in EPLL) is fitted on patches
of grayscale images that scikit-image ships (colour ones converted with
``rgb2gray``), one image held out for validation (NL-means' h and EPLL's
schedule are chosen on it) and one held out for the test (``camera`` by
default). Noise sigma = 25/255 on images in [0, 1]; PSNR of the outputs
clipped to [0, 1]. Also reported: the MAP-component and posterior-mean
one-pass estimates, and scikit-image's TV and wavelet denoisers (tuned on
the validation image as well) for context.

    python benchmarks/experiments/natural_denoising.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, base_parser, machine, write_results  # noqa: E402

from gmmfast import ConvergenceWarning  # noqa: E402
from gmmfast.image import PatchDenoiser, psnr  # noqa: E402

NAME = "natural_denoising"
SIGMA = 25 / 255
TRAIN = (
    "coins",
    "moon",
    "page",
    "text",
    "astronaut",
    "coffee",
    "brick",
    "grass",
    "gravel",
    "rocket",
    "clock",
    "cell",
    "immunohistochemistry",
    "hubble_deep_field",
)
EPLL_BASE = {"epll_patch_step": "map"}  # what a candidate leaves out
EPLL_CANDIDATES = [  # betas in units of 1 / sigma^2; lambda = fidelity / sigma^2
    {
        "epll_init": "noisy",
        "epll_betas": (1, 4, 8, 16, 32),
        "epll_fidelity": 64.0,
    },  # Zoran & Weiss (lambda = m^2/s^2)
    {"epll_init": "noisy", "epll_betas": (1, 4, 8, 16, 32, 64, 128), "epll_fidelity": 64.0},
    {
        "epll_init": "map",
        "epll_betas": (16, 32, 64, 128),
        "epll_fidelity": 4.0,
    },  # PatchDenoiser's default
    {"epll_init": "map", "epll_betas": (8, 16, 32, 64), "epll_fidelity": 4.0},
    {
        "epll_init": "posterior_mean",
        "epll_betas": (32, 64, 128, 256),
        "epll_fidelity": 4.0,
        "epll_patch_step": "posterior_mean",
    },
]


def gray_image(name: str) -> np.ndarray:
    from skimage import data
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.util import img_as_float

    img = getattr(data, name)()
    if img.ndim == 3:
        img = rgb2gray(rgba2rgb(img) if img.shape[2] == 4 else img)
    return img_as_float(img).astype(np.float64)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--test-image", default="camera")
    parser.add_argument("--val-image", default="chelsea")
    parser.add_argument(
        "--val-crop", type=int, default=256, help="centre crop of the validation image (speed)"
    )
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--max-patches", type=int, default=150_000)
    parser.add_argument("--max-iter", type=int, default=60)
    parser.add_argument("--reg", type=float, default=1e-4)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument(
        "--prior-cache", default=str(Path.home() / ".cache" / "gmmfast" / "denoising")
    )
    parser.add_argument(
        "--f32",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="float32 compute (default; --no-f32 for float64)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)

    train_names = [n for n in TRAIN if n not in (args.test_image, args.val_image)]
    train = [gray_image(n) for n in train_names]
    clean = gray_image(args.test_image)
    val = gray_image(args.val_image)
    c = args.val_crop
    if c and min(val.shape) > c:
        r0, c0 = (val.shape[0] - c) // 2, (val.shape[1] - c) // 2
        val = val[r0 : r0 + c, c0 : c0 + c]

    # A list of images of different sizes: patches are drawn uniformly among
    # the patches of all of them.
    dn = PatchDenoiser(
        8,
        args.k,
        stride=1,
        remove_mean=True,
        max_patches=args.max_patches,
        max_iter=args.max_iter,
        reg_covar=args.reg,
        random_state=args.seed,
        dtype=np.float32 if args.f32 else np.float64,
        n_threads=args.n_threads,
        verbose=1,
    )
    cache = Path(args.prior_cache) / (
        f"natural_prior_{args.test_image}_{args.val_image}_k{args.k}_"
        f"p{args.max_patches}_i{args.max_iter}_r{args.reg:g}_s{args.seed}.npz"
    )
    fit_info = cache.with_suffix(
        ".json"
    )  # fit time and iterations, read back with the cached prior
    if cache.exists():
        dn = PatchDenoiser.load(cache)
        dn.set_params(n_threads=args.n_threads, dtype=np.float32 if args.f32 else np.float64)
        print(f"prior loaded from {cache}", flush=True)
        info = (
            json.loads(fit_info.read_text())
            if fit_info.exists()
            else {"fit_seconds": None, "n_iter": None}
        )
    else:
        with Timer() as t_fit:
            dn.fit(train)
        info = {"fit_seconds": t_fit.seconds, "n_iter": int(dn.mixture_.n_iter_)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        dn.save(cache)
        fit_info.write_text(json.dumps(info))
    dn.verbose = 0
    dn.stride = args.stride

    rng = np.random.default_rng(args.seed)
    val_noisy = val + SIGMA * rng.standard_normal(val.shape)
    noisy = clean + SIGMA * rng.standard_normal(clean.shape)

    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

    peers = {
        "skimage nl_means (h)": (
            lambda im, v: denoise_nl_means(
                im, h=v, sigma=SIGMA, patch_size=7, patch_distance=11, fast_mode=True
            ),
            [f * SIGMA for f in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)],
        ),
        "skimage tv_chambolle (weight)": (
            lambda im, v: denoise_tv_chambolle(im, weight=v),
            [f * SIGMA for f in (0.4, 0.6, 0.8, 1.0, 1.3)],
        ),
        "skimage wavelet (sigma)": (
            lambda im, v: denoise_wavelet(
                im, sigma=v, mode="soft", method="BayesShrink", rescale_sigma=True
            ),
            [f * SIGMA for f in (0.75, 1.0, 1.25, 1.5)],
        ),
    }
    clipped = lambda ref, x: psnr(ref, np.clip(x, 0, 1))  # noqa: E731
    peer_choice = {}
    for name, (fn, grid) in peers.items():
        scores = {v: clipped(val, fn(val_noisy, v)) for v in grid}
        peer_choice[name] = (max(scores, key=scores.get), scores)
    epll_val = []
    for cand in EPLL_CANDIDATES:
        dn.set_params(**{**EPLL_BASE, **cand})
        epll_val.append(clipped(val, dn.denoise(val_noisy, SIGMA, method="epll")))
        print(f"val EPLL {cand}: {epll_val[-1]:.2f}", flush=True)
    best = EPLL_CANDIDATES[int(np.argmax(epll_val))]
    dn.set_params(**{**EPLL_BASE, **best})

    row, seconds, outputs = {"noisy": clipped(clean, noisy)}, {}, {}
    for method in ("map", "posterior_mean", "epll"):
        start = time.perf_counter()
        outputs[method] = dn.denoise(noisy, SIGMA, method=method)
        seconds[f"gmmfast {method}"] = time.perf_counter() - start
        row[f"gmmfast {method}"] = clipped(clean, outputs[method])
    for name, (fn, _) in peers.items():
        start = time.perf_counter()
        out = fn(noisy, peer_choice[name][0])
        seconds[name] = time.perf_counter() - start
        row[name] = clipped(clean, out)
        if "nl_means" in name:
            outputs["nl_means"] = out
    for k, v in row.items():
        print(f"{k}: {v:.2f} dB", flush=True)

    results = {
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "prior_cache")},
        "sigma": SIGMA,
        "train_images": train_names,
        "val_image": f"{args.val_image} (centre {c}x{c})",
        "test_image": args.test_image,
        "prior": {
            "patch_size": 8,
            "n_components": args.k,
            "remove_mean": True,
            "max_patches": args.max_patches,
            "fit_seconds": info["fit_seconds"],
            "n_iter": info["n_iter"],
        },
        "psnr": row,
        "seconds": seconds,
        "epll_settings": {k: list(v) if isinstance(v, tuple) else v for k, v in best.items()},
        "epll_val_psnr": [
            {
                "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cand.items()},
                "psnr": s,
            }
            for cand, s in zip(EPLL_CANDIDATES, epll_val)
        ],
        "peer_params": {
            n: {"chosen": v, "val_psnr": {f"{a:.4f}": s for a, s in sc.items()}}
            for n, (v, sc) in peer_choice.items()
        },
    }
    figure(Path(args.out), clean, noisy, outputs, row)
    results["figure"] = f"{NAME}.png"
    write_results(args.out, NAME, results, markdown(results))


def figure(out: Path, clean, noisy, outputs, row) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("clean", clean, None),
        ("noisy", noisy, row["noisy"]),
        ("NL-means (tuned h)", outputs["nl_means"], row["skimage nl_means (h)"]),
        ("gmmfast EPLL", outputs["epll"], row["gmmfast epll"]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 4.0))
    for ax, (title, img, value) in zip(axes, panels):
        ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title + ("" if value is None else f"\n{value:.2f} dB"), fontsize=9)
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{NAME}.png", dpi=100)
    plt.close(fig)


def markdown(r) -> str:
    p = r["prior"]
    lines = [
        "# Natural-image denoising: EPLL with an 8x8 patch GMM vs NL-means",
        "",
        f"Test image `{r['test_image']}`, noise sigma 25/255 (images in [0, 1]); prior: 8x8 mean-removed patches, "
        f"K={p['n_components']}, {p['max_patches']:,} patches from {len(r['train_images'])} scikit-image images "
        f"({', '.join(r['train_images'])})"
        + (
            f", fitted in {p['fit_seconds']:.0f} s ({p['n_iter']} EM iterations)"
            if p["fit_seconds"]
            else ""
        )
        + ". "
        f"NL-means' h, the other peers' parameter and EPLL's schedule chosen on `{r['val_image']}`. "
        "PSNR of outputs clipped to [0, 1].",
        "",
        "| method | PSNR (dB) | seconds |",
        "|---|---:|---:|",
    ]
    for k, v in r["psnr"].items():
        s = r["seconds"].get(k)
        lines.append(f"| {k} | {v:.2f} | {'' if s is None else f'{s:.1f}'} |")
    nlm = r["psnr"]["skimage nl_means (h)"]
    epll_gain = r["psnr"]["gmmfast epll"] - max(
        r["psnr"]["gmmfast map"], r["psnr"]["gmmfast posterior_mean"]
    )
    lines += [
        "",
        f"EPLL - NL-means: {r['psnr']['gmmfast epll'] - nlm:+.2f} dB. EPLL settings: {r['epll_settings']}; "
        f"NL-means h = {r['peer_params']['skimage nl_means (h)']['chosen']:.4f}.",
        "",
        f"EPLL - best one-pass estimate (MAP component / posterior mean): "
        f"{epll_gain:+.2f} dB"
        " (validation: "
        + ", ".join(f"{e['psnr']:.2f}" for e in r["epll_val_psnr"])
        + " dB for the EPLL "
        "candidates). With this prior, EPLL "
        + ("improves" if epll_gain > 0 else "does not improve")
        + " on averaging the one-pass patch estimates of this image.",
        "",
        f"![clean / noisy / NL-means / EPLL]({r['figure']})",
        "",
        "Reproduce: `python benchmarks/experiments/natural_denoising.py`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
