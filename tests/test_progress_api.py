"""Progress from the Python API: bars on long work when asked (``verbose >= 1``), or
on a terminal for work that lasts (automatic bars, after a delay); silent otherwise."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from gmmfast import GaussianMixture, GMMClassifier, PatchDenoiser
from gmmfast.utils import _progress

pytest.importorskip("tqdm")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _X():
    rng = np.random.RandomState(0)
    return np.concatenate([rng.randn(200, 3), rng.randn(200, 3) + 3])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_verbose_asks_for_the_em_bar(capsys):
    GaussianMixture(2, verbose=1, max_iter=5, random_state=0).fit(_X())
    err = capsys.readouterr().err
    assert "EM K=2" in err and "iter" in err


def test_silent_by_default_off_a_terminal(capsys):
    GaussianMixture(2, max_iter=5, random_state=0).fit(_X())
    GMMClassifier(2, random_state=0).fit(_X(), np.repeat([0, 1], 200))
    assert capsys.readouterr().err == ""


def test_progress_bars_false_silences_even_verbose_work_inside(capsys):
    with _progress.progress_bars(False):
        GaussianMixture(2, max_iter=5, random_state=0).fit(_X())
    assert capsys.readouterr().err == ""


def test_automatic_bars_on_a_terminal_only_for_work_that_lasts(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    GaussianMixture(2, max_iter=5, random_state=0).fit(_X())  # far below AUTO_DELAY
    assert "EM K=2" not in terminal.getvalue()
    monkeypatch.setattr(_progress, "AUTO_DELAY", 0.0)  # every piece of work "lasts"
    GaussianMixture(2, max_iter=5, random_state=0).fit(_X())
    assert "EM K=2" in terminal.getvalue()


def test_classifier_and_denoiser_show_their_bars_when_verbose(capsys):
    GMMClassifier(2, verbose=1, random_state=0).fit(_X(), np.repeat([0, 1], 200))
    err = capsys.readouterr().err
    assert "GMMClassifier" in err and "EM K=2" in err
    rng = np.random.RandomState(0)
    dn = PatchDenoiser(patch_size=4, n_components=2, max_iter=3, verbose=1, random_state=0)
    dn.fit(rng.rand(2, 16, 16))
    assert "EM K=2" in capsys.readouterr().err  # the prior's EM, one level down
    dn.denoise(rng.rand(16, 16), 0.1, method="epll")
    assert "EPLL" in capsys.readouterr().err


def test_network_training_shows_its_epoch_bar_when_verbose(capsys):
    pytest.importorskip("torch")
    from gmmfast.datasets import load_mnist_sample
    from gmmfast.vae import ConvVAE

    X = load_mnist_sample()[0][:200]
    ConvVAE(latent_dim=2, architecture="dense", epochs=1, random_state=0).fit(X)
    assert "epoch 1/1" not in capsys.readouterr().err  # silent off a terminal
    ConvVAE(latent_dim=2, architecture="dense", epochs=1, verbose=1, random_state=0).fit(X)
    assert "epoch 1/1" in capsys.readouterr().err
