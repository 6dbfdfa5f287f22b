"""The noise a certifying model is trained under is checked before any photo is read."""

import math

import pytest

import huskyai
from huskyai.errors import DataError
from huskyai.training.config import TrainConfig


@pytest.mark.parametrize("sigma", [-0.25, math.nan])
def test_a_negative_or_missing_noise_sigma_is_refused_before_training(sigma, tmp_path):
    with pytest.raises(DataError, match="noise_sigma"):
        TrainConfig(noise_sigma=sigma)
    with pytest.raises(DataError, match="noise_sigma"):
        huskyai.train(tmp_path / "no-photos-needed", tmp_path / "out", noise_sigma=sigma)
    assert not (tmp_path / "out").exists()


def test_zero_and_positive_sigmas_are_accepted():
    assert TrainConfig(noise_sigma=0.0).noise_sigma == 0.0
    assert TrainConfig(noise_sigma=0.25).noise_sigma == 0.25
