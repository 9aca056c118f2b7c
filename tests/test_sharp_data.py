"""The sharp-unlearn line's data: CIFAR-10/100 in the official python layout (read without
running pickle code), the embedded 10-class mnist, CIFAR augmentation and ResNet-18, and the
metrics of datasets without a group attribute."""

import os
import pickle

import numpy as np
import pytest
import torch

from grmu import GrmuError
from grmu.augment import get_augmentation, random_crop_flip
from grmu.data import get_dataset
from grmu.data.cifar import validation_split
from grmu.metrics import EVAL_SETS, split_metrics
from grmu.models import build_model
from tests.fixtures_real import CIFAR_PER_CLASS, cifar_pixels, write_cifar


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_prepares_from_the_official_layout(tmp_path, name):
    folder, labels = write_cifar(tmp_path, name)
    table, inputs, info = get_dataset(name).build({"split_seed": 2}, tmp_path)
    n_train = len(labels)
    n_classes = info["n_classes"]
    assert n_classes == (10 if name == "cifar10" else 100) and info["n_attrs"] == 1
    assert info["augment"] == "crop_pad_flip" and info["classes"][3] == ("c3" if name == "cifar10" else "f3")
    assert inputs.shape == (n_train + (30 if name == "cifar10" else 100), 3, 32, 32) and inputs.dtype == torch.uint8
    split = table["split"].to_numpy()
    assert (split[n_train:] == "test").all()
    val = np.flatnonzero(split == "val")
    # 10% of every class, drawn per class in class order with RandomState(split_seed)
    assert np.array_equal(np.sort(val), np.sort(validation_split(labels, 2, n_classes)))
    assert all((labels[val] == c).sum() == CIFAR_PER_CLASS[name] // 10 for c in range(n_classes))
    assert (table["y"].to_numpy()[:n_train] == labels).all() and (table["a"] == 0).all()
    first = pickle.loads((folder / ("data_batch_1" if name == "cifar10" else "train")).read_bytes())[b"data"][0]
    assert np.array_equal(inputs[0].numpy().reshape(-1), first)  # CHW order as stored


def test_validation_split_is_upstreams_per_class_draw():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1] * 2)
    rng = np.random.RandomState(5)
    want = np.concatenate([rng.choice(np.flatnonzero(labels == c), 1, replace=False) for c in (0, 1)])
    assert np.array_equal(validation_split(labels, 5, 2), want)
    assert not np.array_equal(validation_split(labels, 6, 2), want)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_payload_in_place_of_a_cifar_batch_is_refused_without_running(tmp_path):
    write_cifar(tmp_path, "cifar10")
    marker = tmp_path / "ran"
    evil = {b"labels": [0], b"data": Payload(marker)}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(GrmuError) as err:
        get_dataset("cifar10").build({"split_seed": 2}, tmp_path)
    assert "data_batch_3" in str(err.value) and "unexpected object posix.system" in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_3").read_bytes())  # the fixture does run ...
    assert marker.exists()  # ... under a plain unpickler


def test_missing_or_damaged_cifar_files_get_one_line(tmp_path):
    with pytest.raises(GrmuError, match=r"cifar10 folder not found: expected the folder .*cifar-10-batches-py"):
        get_dataset("cifar10").build({"split_seed": 2}, tmp_path)
    folder, _ = write_cifar(tmp_path, "cifar10")
    (folder / "test_batch").unlink()
    with pytest.raises(GrmuError, match="CIFAR file test_batch not found"):
        get_dataset("cifar10").build({"split_seed": 2}, tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [0, 11], b"data": cifar_pixels(2, 0)}, protocol=2))
    with pytest.raises(GrmuError, match="'labels' must hold one label in 0..9 per image"):
        get_dataset("cifar10").build({"split_seed": 2}, tmp_path)
    with pytest.raises(GrmuError, match="split_seed must be a non-negative integer, got -1"):
        get_dataset("cifar10").build({"split_seed": -1}, tmp_path)


def test_embedded_mnist_has_ten_classes_and_no_groups():
    table, inputs, info = get_dataset("mnist").build({"seed": 0, "train_frac": 0.6, "val_frac": 0.2, "image_size": 14})
    assert info["n_classes"] == 10 and info["n_attrs"] == 1 and inputs.shape == (5000, 1, 14, 14)
    assert sorted(table["y"].unique()) == list(range(10)) and (table["a"] == 0).all()
    assert (table["split"] == "train").sum() == 3000 and (table["split"] == "val").sum() == 1000
    with pytest.raises(GrmuError, match="image_size 9 is invalid"):
        get_dataset("mnist").build({"seed": 0, "train_frac": 0.6, "val_frac": 0.2, "image_size": 9})


def test_crop_pad_flip_is_a_padded_crop_then_a_flip():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) / 100
    gen = torch.Generator().manual_seed(3)
    outs = [random_crop_flip(x, gen, pad=2) for _ in range(20)]
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    flips = 0
    for out in outs:
        for i in range(2):
            crops = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
            plain = any(torch.equal(out[i], c) for c in crops)
            flipped = any(torch.equal(out[i], c.flip(-1)) for c in crops)
            assert plain or flipped
            flips += flipped and not plain
    assert 5 < flips < 35  # about half flipped
    assert get_augmentation("crop_pad_flip") is random_crop_flip


def test_resnet18_cifar_keeps_32_px_into_the_first_block():
    net = build_model({"arch": "resnet18_cifar", "width": 16}, 10, (3, 32, 32))
    body = net.body
    assert body.conv1.kernel_size == (3, 3) and body.conv1.stride == (1, 1)
    assert isinstance(body.maxpool, torch.nn.Identity)
    x = body.relu(body.bn1(body.conv1(torch.zeros(1, 3, 32, 32))))
    assert body.layer1(body.maxpool(x)).shape[-1] == 32
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_metrics_without_a_group_attribute_omit_the_fairness_ones():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 10, n)
    pred = np.where(rng.random(n) < 0.8, y, (y + 1) % 10)
    loss = rng.random(n).astype(np.float32)
    a = np.zeros(n, dtype=np.int64)
    sets = dict(zip(EVAL_SETS, (np.arange(0, 200), np.arange(200, 240), np.arange(240, 300), np.arange(300, 400))))
    m = split_metrics(pred, loss, y, a, y, sets, [[0, 0]], 10, "single", fairness=False, group_accuracy=False)
    assert not {"EO", "GA", "DP", "EP"} & set(m) and {"RA", "UA", "TA", "MIA", "MIA_SVC", "WG"} <= set(m)
    m = split_metrics(pred, loss, y, a, y, sets, [[0, 0]], 10, "single", fairness=False)
    assert m["GA"] == pytest.approx(100 * np.mean(pred[300:][y[300:] == 0] == 0))  # class-wise forgetting
