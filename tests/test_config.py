import pytest

from mnist_etc.audit.attacks.config import AttackConfig
from mnist_etc.config import DataConfig, TrainConfig
from mnist_etc.errors import UserError


@pytest.mark.parametrize("kwargs, message", [
    ({"hid_dim": 1}, "hid_dim must be an integer in 2..256, got 1"),
    ({"hid_dim": 257}, "hid_dim must be an integer in 2..256, got 257"),
    ({"hid_dim": 3.5}, "hid_dim must be an integer"),
    ({"ae_noise_multiplier": -0.1}, "ae_noise_multiplier must be a finite number >= 0"),
    ({"clf_noise_multiplier": float("nan")}, "clf_noise_multiplier must be a finite number >= 0"),
    ({"l2_norm_clip": 0}, "l2_norm_clip must be a finite number > 0, got 0"),
    ({"l2_norm_clip": -1.0}, "l2_norm_clip must be a finite number > 0"),
    ({"microbatches": 5}, "microbatches must divide batch_size 64, got 5"),
    ({"ae_epochs": 0}, "ae_epochs must be an integer >= 1"),
    ({"delta": 1.5}, "delta must be a number strictly between 0 and 1"),
])
def test_bad_training_settings(kwargs, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("cls, kwargs, message", [
    (AttackConfig, {"n_best": 300}, "n_best must not exceed n_samples"),
    (AttackConfig, {"lr": 0}, r"lr must be a number in \(0, 1\]"),
    (AttackConfig, {"victims": 0}, "victims must be an integer >= 1"),
    (DataConfig, {"val_fraction": 0}, "val_fraction must be a number strictly between 0 and 1"),
    (DataConfig, {"val_fraction": 0.5, "test_fraction": 0.45}, "training data remains"),
])
def test_bad_attack_and_data_settings(cls, kwargs, message):
    with pytest.raises(UserError, match=message):
        cls(**kwargs)


def test_unknown_keys_are_named():
    with pytest.raises(UserError, match="unknown key 'hid_size'; accepted: hid_dim, ae_epochs"):
        TrainConfig.parse({"hid_size": 3})


def test_defaults_are_valid():
    assert TrainConfig().hid_dim == 32 and not TrainConfig().ae_private
    assert AttackConfig().n_iter == 8 and AttackConfig().attack == "public-prior"


def test_bool_fields_become_flags_and_dp_defaults_are_safe():
    import argparse

    from mnist_etc_cli.options import add_settings_options

    assert TrainConfig().delta == 1e-5 and TrainConfig().insecure_seeded_dp is False
    parser = argparse.ArgumentParser()
    opts = add_settings_options(parser, TrainConfig)
    assert opts.build(parser.parse_args([])).insecure_seeded_dp is False
    assert opts.build(parser.parse_args(["--insecure-seeded-dp"])).insecure_seeded_dp is True
    with pytest.raises(UserError, match="insecure_seeded_dp must be true or false, got 'yes'"):
        TrainConfig(insecure_seeded_dp="yes")
