"""PyTorch networks behind :mod:`gmmfast.vae` (imported only with torch).

The default architecture is the reference projects' convolutional VAE:
encoder convolutions of 32, 64, 128, 128 and 256 channels (3 x 3, stride 2
at the second and fourth), a 512-unit dense layer to the latent mean and
log standard deviation, and a decoder that mirrors it with transposed
convolutions; dropout after the dense layers. The decoder returns logits
(the sigmoid is folded into the binary cross-entropy for stability).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2.0 * math.pi)


def feature_shape(
    image_shape: Sequence[int], channels: Sequence[int], strides: Sequence[int]
) -> tuple[int, int, int]:
    """Shape (C, H, W) of the encoder's last convolution for ``image_shape``.

    Raises
    ------
    ValueError
        If a stride-2 convolution meets an odd side, which the mirrored
        transposed convolutions could not restore exactly.
    """
    h, w = (int(s) for s in image_shape)
    for s in strides:
        if s == 2:
            if h % 2 or w % 2:
                raise ValueError(
                    f"images of shape {tuple(image_shape)} do not fit strides {tuple(strides)}: every "
                    "stride-2 convolution needs even sides (28 x 28 fits the default)."
                )
            h, w = h // 2, w // 2
    return int(channels[-1]), h, w


class Encoder(nn.Module):
    """Images (n, 1, H, W) -> latent mean and log standard deviation."""

    def __init__(self, image_shape, channels, strides, hidden_units, latent_dim, dropout):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c, s in zip(channels, strides):
            layers += [nn.Conv2d(c_in, c, 3, stride=s, padding=1), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        c, h, w = feature_shape(image_shape, channels, strides)
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.mu = nn.Linear(hidden_units, latent_dim)
        self.log_sigma = nn.Linear(hidden_units, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.dense(self.features(x))
        return self.mu(h), self.log_sigma(h)


class Decoder(nn.Module):
    """Latent points (n, d) -> pixel logits (n, 1, H, W), the encoder mirrored."""

    def __init__(self, image_shape, channels, strides, hidden_units, latent_dim, dropout):
        super().__init__()
        self.shape = feature_shape(image_shape, channels, strides)
        c, h, w = self.shape
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_units, c * h * w),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        outs = list(channels[-2::-1]) + [1]  # 256 -> 128 -> 128 -> 64 -> 32 -> 1
        for i, (c_in, c_out, s) in enumerate(zip(channels[::-1], outs, strides[::-1])):
            layers.append(
                nn.ConvTranspose2d(c_in, c_out, 3, stride=s, padding=1, output_padding=s - 1)
            )
            if i < len(outs) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(self.dense(z).view(-1, *self.shape))


class VAENet(nn.Module):
    """Encoder and decoder together.

    Layers followed by a ReLU get He (Kaiming) initialisation with zero
    biases: torch's default initialisation shrinks the signal about
    three-fold in variance per layer, so through this depth the latent
    means start almost constant and training tends to settle on the
    posterior-collapse solution (every image decoded to the mean digit).
    """

    def __init__(self, image_shape, channels, strides, hidden_units, latent_dim, dropout):
        super().__init__()
        args = (image_shape, channels, strides, hidden_units, latent_dim, dropout)
        self.encoder = Encoder(*args)
        self.decoder = Decoder(*args)
        for part in (
            self.encoder.features,
            self.encoder.dense,
            self.decoder.dense,
            self.decoder.features,
        ):
            layers = list(part)
            for layer, after in zip(layers, layers[1:] + [None]):
                if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and isinstance(
                    after, nn.ReLU
                ):
                    # ConvTranspose2d weights are (in, out, k, k): fan_out is the fan-in of its output.
                    mode = "fan_out" if isinstance(layer, nn.ConvTranspose2d) else "fan_in"
                    nn.init.kaiming_normal_(layer.weight, mode=mode, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, sample: bool = True):
        mu, log_sigma = self.encoder(x)
        z = mu + torch.randn_like(mu) * log_sigma.exp() if sample else mu
        return self.decoder(z), mu, log_sigma, z


class DenseEncoder(nn.Module):
    """Images (n, 1, H, W) -> latent mean and log standard deviation, through dense layers."""

    def __init__(self, n_pixels: int, sizes: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        widths = [int(n_pixels), *[int(s) for s in sizes]]
        self.features = nn.Sequential(nn.Flatten(), _dense_stack(widths), nn.ReLU())
        self.mu = nn.Linear(widths[-1], latent_dim)
        self.log_sigma = nn.Linear(widths[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.log_sigma(h)


class DenseDecoder(nn.Module):
    """Latent points (n, d) -> pixel logits (n, 1, H, W), the dense encoder mirrored."""

    def __init__(self, image_shape: Sequence[int], sizes: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.image_shape = (1, int(image_shape[0]), int(image_shape[1]))
        n_pixels = self.image_shape[1] * self.image_shape[2]
        self.layers = _dense_stack([int(latent_dim), *[int(s) for s in sizes[::-1]], n_pixels])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z).view(-1, *self.image_shape)


class DenseVAENet(nn.Module):
    """The dense VAE of DEC and VaDE (784-500-500-2000-latent, the decoder mirrored).

    Same interface as :class:`VAENet` (``encoder``, ``decoder``, ``forward``);
    no dropout. Layers followed by a ReLU get He initialisation with zero biases.
    """

    def __init__(self, image_shape, sizes, latent_dim):
        super().__init__()
        n_pixels = int(image_shape[0]) * int(image_shape[1])
        self.encoder = DenseEncoder(n_pixels, sizes, latent_dim)
        self.decoder = DenseDecoder(image_shape, sizes, latent_dim)
        for part in (self.encoder.features[1], self.decoder.layers):
            layers = list(part) + ([nn.ReLU()] if part is self.encoder.features[1] else [])
            for layer, after in zip(layers, layers[1:] + [None]):
                if isinstance(layer, nn.Linear) and isinstance(after, nn.ReLU):
                    nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, sample: bool = True):
        mu, log_sigma = self.encoder(x)
        z = mu + torch.randn_like(mu) * log_sigma.exp() if sample else mu
        return self.decoder(z), mu, log_sigma, z


class GMMPrior(nn.Module):
    """Learnable diagonal Gaussian mixture p(c) p(z | c) in latent space (VaDE)."""

    def __init__(self, weights, means, variances):
        super().__init__()
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        self.logits = nn.Parameter(as_t(weights).clamp_min(1e-10).log())
        self.means = nn.Parameter(as_t(means).clone())
        self.log_vars = nn.Parameter(as_t(variances).log())

    def log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=0)

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c) + log N(z | mu_c, diag var_c), shape (n, K)."""
        diff = z[:, None, :] - self.means[None]
        log_pdf = -0.5 * (
            LOG_2PI + self.log_vars[None] + diff.pow(2) / self.log_vars.exp()[None]
        ).sum(-1)
        return self.log_weights()[None] + log_pdf

    def kl(
        self, mu: torch.Tensor, log_sigma: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """KL(q(z, c | x) || p(z, c)) per sample, with q(c | x) = p(c | z).

        Returns the per-sample KL (n,) and q(c | x) (n, K).
        """
        log_gamma = torch.log_softmax(self.log_joint(z), dim=1)
        gamma = log_gamma.exp()
        var_z = (2.0 * log_sigma).exp()
        inv_var_c = (-self.log_vars).exp()
        # E_q[log q(z|x)] - E_q[log p(z|c)], the constant log(2 pi) cancels
        cross = 0.5 * (
            self.log_vars[None]
            + (var_z[:, None, :] + (mu[:, None, :] - self.means[None]).pow(2)) * inv_var_c[None]
        ).sum(-1)
        kl = (gamma * cross).sum(1) - 0.5 * (1.0 + 2.0 * log_sigma).sum(1)
        kl = kl + (gamma * (log_gamma - self.log_weights()[None])).sum(1)
        return kl, gamma


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over pixels, per image (n,)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per sample (n,)."""
    return 0.5 * (mu.pow(2) + (2.0 * log_sigma).exp() - 1.0 - 2.0 * log_sigma).sum(1)


def augment(x: torch.Tensor, rotation: float, flip: bool) -> torch.Tensor:
    """Random rotations of up to ``rotation`` degrees and horizontal flips of
    half of the images (the reconstruction target is the augmented image).
    Uses torch's global generator, which fit seeds."""
    n = x.shape[0]
    if flip:
        flipped = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
    if rotation > 0:
        angle = (torch.rand(n, device=x.device) * 2.0 - 1.0) * math.radians(rotation)
        cos, sin = angle.cos(), angle.sin()
        zero = torch.zeros_like(cos)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros").clamp(0.0, 1.0)
    return x


def add_noise(x: torch.Tensor, noise: float) -> torch.Tensor:
    """The encoder's input: Gaussian noise of standard deviation ``noise``
    added, clipped to [0, 1] (the target stays the clean image)."""
    return (x + noise * torch.randn_like(x)).clamp(0.0, 1.0) if noise > 0 else x


class MLPAutoencoder(nn.Module):
    """A dense autoencoder (DEC / VaDE / N2D's 784-500-500-2000-10 shape by default).

    ReLU between layers; the embedding and the reconstruction are linear
    (the loss is the squared error on pixels). Takes (n, 1, H, W) or (n, H * W)
    images.
    """

    def __init__(self, n_pixels: int, hidden: Sequence[int], embedding_size: int) -> None:
        super().__init__()
        sizes = [int(n_pixels), *[int(h) for h in hidden], int(embedding_size)]
        self.encoder = _dense_stack(sizes)
        self.decoder = _dense_stack(sizes[::-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))


def _dense_stack(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``sizes`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def squared_error(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels, per image (n,)."""
    return (reconstruction - target.flatten(1)).pow(2).sum(1)
