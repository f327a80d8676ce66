import numpy as np
import pytest

from mnist_etc.config import DataConfig
from mnist_etc.data import load_split, stratified_split, validate_digits
from mnist_etc.errors import UserError


def test_embedded_split_is_stratified_seeded_and_disjoint():
    split = load_split(DataConfig())
    assert (split.n_train, len(split.y_val), len(split.y_test)) == (3500, 500, 1000)
    assert split.x_train.dtype == np.float32 and split.x_train.shape[1:] == (28, 28, 1)
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    for y in (split.y_train, split.y_val, split.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() == counts.max(), counts  # every class in proportion
    again = load_split(DataConfig())
    np.testing.assert_array_equal(split.y_test, again.y_test)
    other = load_split(DataConfig(seed=1))
    assert not np.array_equal(split.x_test, other.x_test)
    tr, va, te = stratified_split(np.repeat(np.arange(10), 50), DataConfig())
    assert len(set(tr) | set(va) | set(te)) == len(tr) + len(va) + len(te) == 500


def test_train_size_keeps_every_class():
    split = load_split(DataConfig(train_size=200))
    assert split.n_train == 200
    assert set(np.bincount(split.y_train)) == {20}
    assert split.describe()["train_size"] == 200


def test_keras_npz_is_accepted(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    y = np.tile(np.arange(10), 20).astype(np.uint8)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x[:150], y_train=y[:150], x_test=x[150:], y_test=y[150:])
    split = load_split(DataConfig(data=str(path)))
    assert split.n_train + len(split.y_val) + len(split.y_test) == 200
    assert split.x_train.max() <= 1.0


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((5, 27, 28)), np.zeros(5, int), "shape"),
    (np.zeros((5, 28, 28)), np.zeros(4, int), "labels must be a vector"),
    (np.zeros((5, 28, 28)), np.full(5, 10), "labels must be integers 0..9"),
    (np.full((5, 28, 28), 300.0), np.zeros(5, int), "pixels must lie in 0..255"),
    (np.full((5, 28, 28), np.nan), np.zeros(5, int), "NaN"),
    (np.zeros((5, 28, 28)), np.full(5, 0.5), "labels must be integers"),
])
def test_bad_digits_get_one_clear_sentence(x, y, message):
    with pytest.raises(UserError, match=message):
        validate_digits(x, y, "test data")


def test_corrupt_and_incomplete_files(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"this is not a zip archive")
    with pytest.raises(UserError, match="not a readable .npz"):
        load_split(DataConfig(data=str(corrupt)))
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((10, 28, 28)))
    with pytest.raises(UserError, match="lacks"):
        load_split(DataConfig(data=str(partial)))


def test_full_mnist_downloads_or_names_the_embedded_default(tmp_path, monkeypatch):
    # An empty Keras cache forces a real download attempt. This machine is offline (registries only),
    # so the download fails and the message must name the offline default; online, the digits load.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    try:
        split = load_split(DataConfig(data="mnist"))
    except UserError as exc:
        assert "--data embedded" in str(exc) and "offline" in str(exc)
    else:
        assert split.n_train + len(split.y_val) + len(split.y_test) == 70000
