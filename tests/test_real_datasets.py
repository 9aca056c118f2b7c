"""CelebA, Waterbirds and FairFace read from tiny fixtures in their official layouts
(tests/fixtures_real.py): tables, splits, forget sets (incl. FairFace's 9/25-group sets), the
stored images, the training augmentation, the pipeline on each, and clear errors."""

import json
import random

import numpy as np
import pytest
import torch

from grmu import GrmuError
from grmu.config import validate
from grmu.data import get_dataset
from grmu.prepared import Prepared, load_prepared
from grmu.data.fairface import MULTI_GROUP_PAIRS
from grmu.data.images import load_image
from grmu.models import build_model
from grmu.stages.evaluate import run as evaluate
from grmu.stages.forget_set import run as forget_set
from grmu.stages.prepare import run as prepare
from grmu.stages.unlearn import run as unlearn
from tests.conftest import train_reference
from grmu.splits import forget_groups, forget_pool, multi_group_groups, sample_forget
from grmu.augment import _crop_boxes, random_resized_crop_flip, random_shift, train_augmentation
from tests import fixtures_real as fx
from tests.conftest import small_params
from tests.test_stage_errors import assert_one_line_error, run_stage

# the image datasets with a fixture that sets their image size (CelebA, Waterbirds, FairFace)
DATASETS = tuple(name for name in fx.MAKERS if "image_size" in get_dataset(name).options)


def real_params(name, data_dir, size=16, **over):
    p = small_params(dataset=name, data_dir=str(data_dir), datasets={name: {"image_size": size}}, **over)
    p["train"] = {**p["train"], "epochs": 1, "batch_size": 16}
    p["unlearn"] = {**p["unlearn"], "batch_size": 16}
    return p


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return fx.make_all(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def prepared(data_dir, tmp_path_factory):
    """name -> prepared folder of each fixture at 16 px."""
    out = {}
    for name in DATASETS:
        out[name] = tmp_path_factory.mktemp(f"prep_{name}")
        prepare(real_params(name, data_dir), out[name])
    return out


def load(prepared, name) -> Prepared:
    return load_prepared(prepared[name])


def counts(prep, split):
    return prep.group_counts(prep.indices(split)).tolist()


# --- tables and splits -----------------------------------------------------------------------


def test_celeba_groups_and_official_splits(prepared):
    prep = load(prepared, "celeba")
    # g = a + 2y: (not blond, female), (not blond, male), (blond, female), (blond, male)
    assert counts(prep, "train") == [8, 7, 5, 6]
    assert counts(prep, "val") == counts(prep, "test") == [2, 2, 2, 2]
    assert prep.inputs.shape == (42, 3, 16, 16) and prep.inputs.dtype == torch.uint8
    assert prep.meta["default_forget_groups"] == [[1, 1]] and prep.meta["augment"] == "crop_flip"


def test_celeba_rows_follow_the_partition_file(data_dir, prepared):
    prep = load(prepared, "celeba")
    lines = (data_dir / "celeba/list_eval_partition.txt").read_text().split("\n")
    names = {0: "train", 1: "val", 2: "test"}
    assert [str(s) for s in prep.split] == [names[int(line.split()[1])] for line in lines if line]
    attr = [line.split() for line in (data_dir / "celeba/list_attr_celeba.txt").read_text().split("\n")[2:] if line]
    blond, male = 1 + fx.CELEBA_ATTRS.index("Blond_Hair"), 1 + fx.CELEBA_ATTRS.index("Male")
    assert prep.y.tolist() == [(int(r[blond]) + 1) // 2 for r in attr]
    assert prep.a.tolist() == [(int(r[male]) + 1) // 2 for r in attr]


def test_waterbirds_groups_and_splits(prepared):
    prep = load(prepared, "waterbirds")
    # (landbird, land), (landbird, water), (waterbird, land), (waterbird, water)
    assert counts(prep, "train") == [8, 3, 4, 7]
    assert counts(prep, "val") == counts(prep, "test") == [2, 2, 2, 2]
    assert prep.meta["default_forget_groups"] == [[1, 0]]


def test_fairface_filter_bins_and_seeded_90_10_split(data_dir, prepared, tmp_path):
    prep = load(prepared, "fairface")
    assert prep.n_classes == 9 and prep.n_attrs == 7 and prep.n_groups == 63
    # 32 service_test rows of the train CSV: int(0.9 * 32) = 28 train, 4 val; 14 test rows
    assert [len(prep.indices(s)) for s in ("train", "val", "test")] == [28, 4, 14]
    trval = np.concatenate([prep.indices("train"), prep.indices("val")])
    got = {}
    for y, a in zip(prep.y[trval], prep.a[trval]):
        got[(int(y), int(a))] = got.get((int(y), int(a)), 0) + 1
    assert got == {
        (3, 0): 10,
        (6, 4): 3,
        (1, 5): 3,
        (3, 5): 2,
        (6, 0): 2,
        (8, 6): 2,
        (4, 2): 2,
        (3, 6): 1,
        (0, 3): 4,
        (5, 1): 3,
    }
    test = counts(prep, "test")
    assert {g: n for g, n in enumerate(test) if n} == {
        3 * 7 + 0: 3,
        6 * 7 + 4: 2,
        8 * 7 + 6: 1,
        0 * 7 + 3: 2,
        5 * 7 + 1: 2,
        3 * 7 + 3: 2,
        0 * 7 + 0: 2,
    }
    # the official protocol: positions 0..n-1 of the filtered CSV shuffled by random.Random(seed)
    order = list(range(32))
    random.Random(0).shuffle(order)
    assert sorted(order[:28]) == prep.indices("train").tolist()
    p = real_params("fairface", data_dir)
    p["datasets"]["fairface"]["seed"] = 1
    prepare(p, tmp_path / "seed1")
    assert load_prepared(tmp_path / "seed1").indices("train").tolist() != prep.indices("train").tolist()


def test_stored_images_are_the_eval_transform(data_dir, prepared):
    from PIL import Image
    from torchvision.transforms import v2

    import pandas as pd

    prep = load(prepared, "waterbirds")
    meta = pd.read_csv(data_dir / "waterbird_complete95_forest2water2/metadata.csv")
    for i in (0, 2):  # a landscape and a portrait image
        with Image.open(data_dir / "waterbird_complete95_forest2water2" / meta["img_filename"][i]) as img:
            ref = v2.Compose([v2.Resize(round(16 * 256 / 224)), v2.CenterCrop(16)])(img.convert("RGB"))
        np.testing.assert_array_equal(prep.inputs[i].permute(1, 2, 0).numpy(), np.asarray(ref))
    celeba = load(prepared, "celeba")
    with Image.open(data_dir / "celeba/img_align_celeba/000001.jpg") as img:
        ref = v2.Resize((16, 16))(img.convert("RGB"))  # CelebA: squashed, not cropped
    np.testing.assert_array_equal(celeba.inputs[0].permute(1, 2, 0).numpy(), np.asarray(ref))


def test_eval_transform_matches_torchvision_at_224(tmp_path):
    from PIL import Image
    from torchvision.transforms import v2

    rng = np.random.default_rng(0)
    for w, h in ((300, 240), (178, 218)):
        Image.fromarray(rng.integers(0, 255, (h, w, 3)).astype(np.uint8)).save(tmp_path / "x.jpg")
        with Image.open(tmp_path / "x.jpg") as img:
            img = img.convert("RGB")
            crop = np.asarray(v2.Compose([v2.Resize(256), v2.CenterCrop(224)])(img))
            squash = np.asarray(v2.Resize((224, 224))(img))
        np.testing.assert_array_equal(load_image(tmp_path / "x.jpg", 224, "resize_crop"), crop)
        np.testing.assert_array_equal(load_image(tmp_path / "x.jpg", 224, "squash"), squash)


# --- forget sets -----------------------------------------------------------------------------


def synthetic(train_group_counts, n_attrs=2) -> Prepared:
    g = np.repeat(np.arange(len(train_group_counts)), train_group_counts)
    return Prepared(
        split=np.full(len(g), "train"),
        y=g // n_attrs,
        a=g % n_attrs,
        g=g,
        inputs=None,
        meta={"n_classes": len(train_group_counts) // n_attrs, "n_attrs": n_attrs},
    )


@pytest.mark.parametrize(
    "counts_,group,sizes",
    [
        ([71_629, 66_874, 22_880, 1_387], [1, 1], [138, 693, 1_248]),  # CelebA: blond males
        ([3_498, 184, 56, 1_057], [1, 0], [5, 28, 50]),  # Waterbirds: waterbirds on land
    ],
)
def test_forget_sizes_of_the_real_train_groups(counts_, group, sizes):
    prep = synthetic(counts_)
    assert [len(sample_forget(prep, [group], r, 0)) for r in (0.1, 0.5, 0.9)] == sizes


@pytest.mark.parametrize("name,pool", [("celeba", 6), ("waterbirds", 4)])
def test_forget_set_of_the_default_group(prepared, tmp_path, name, pool):
    prep = load(prepared, name)
    out = forget_set(real_params(name, "unused"), prepared[name], 0.5, 0, tmp_path / "f.json")
    assert out == {"size": pool // 2, "pool": pool}
    forget = json.loads((tmp_path / "f.json").read_text())["forget"]
    y, a = prep.meta["default_forget_groups"][0]
    assert all(prep.split[i] == "train" and prep.y[i] == y and prep.a[i] == a for i in forget)


def test_fairface_single_group_forget_set(prepared, tmp_path):
    prep = load(prepared, "fairface")
    pool = forget_pool(prep, [[3, 0]])
    assert len(pool) == int(np.sum((prep.y == 3) & (prep.a == 0) & (prep.split == "train")))
    assert len(pool) >= 8  # 10 such rows in the train CSV, at most 4 of them drawn into val
    out = forget_set(real_params("fairface", "unused"), prepared["fairface"], 0.5, 0, tmp_path / "f.json")
    assert out == {"size": len(pool) // 2, "pool": len(pool)}


def test_multi_group_pairs_give_9_and_25_groups():
    pairs = [[3, 0], [6, 4], [1, 5], [8, 6], [4, 2]]  # fact sheet §2.3, in this order
    assert MULTI_GROUP_PAIRS == pairs
    nine = multi_group_groups(pairs, 3)
    assert nine == [[y, a] for y in (3, 6, 1) for a in (0, 4, 5)]
    twenty_five = multi_group_groups(pairs, 5)
    assert len(twenty_five) == 25 and {tuple(g) for g in nine} < {tuple(g) for g in twenty_five}
    assert {tuple(g) for g in twenty_five} == {(y, a) for y in (3, 6, 1, 8, 4) for a in (0, 4, 5, 6, 2)}


@pytest.mark.parametrize(
    "k,cells",
    [
        (3, {(3, 0), (6, 4), (1, 5), (3, 5), (6, 0)}),
        (5, {(3, 0), (6, 4), (1, 5), (3, 5), (6, 0), (8, 6), (4, 2), (3, 6)}),
    ],
)
def test_fairface_multi_group_forget_set_is_drawn_from_the_union(prepared, tmp_path, k, cells):
    prep = load(prepared, "fairface")
    p = real_params("fairface", "unused")
    p["forget"].update(groups=None, multi_group=k)
    out = forget_set(p, prepared["fairface"], 0.5, 0, tmp_path / "f.json")
    saved = json.loads((tmp_path / "f.json").read_text())
    assert len(saved["groups"]) == k * k
    train = prep.indices("train")
    # the fixture has train rows in exactly these cells of the k x k groups (and others outside)
    in_union = [i for i in train if (prep.y[i], prep.a[i]) in cells]
    assert out["pool"] == len(in_union) and out["size"] == int(0.5 * len(in_union))
    assert set(saved["forget"]) <= set(in_union)
    assert {(prep.y[i], prep.a[i]) for i in saved["forget"]} - cells == set()


def test_multi_group_is_refused_where_it_does_not_apply(prepared, tmp_path):
    p = real_params("celeba", "unused")
    p["forget"].update(groups=None, multi_group=3)
    with pytest.raises(GrmuError, match="multi_group is only supported by fairface; dataset 'celeba'"):
        forget_set(p, prepared["celeba"], 0.5, 0, tmp_path / "f.json")
    assert not (tmp_path / "f.json").exists()
    with pytest.raises(GrmuError, match=r"forget.multi_group 4 is invalid; valid: null, 3 \(9 groups\), 5"):
        validate(small_params(forget={"multi_group": 4}))
    with pytest.raises(GrmuError, match="forget.multi_group True is invalid"):
        validate(small_params(forget={"multi_group": True}))
    with pytest.raises(GrmuError, match="forget.groups and forget.multi_group are both set"):
        validate(small_params(forget={"multi_group": 3, "groups": [[3, 0]]}))
    assert forget_groups({"groups": None, "multi_group": None}, {"default_forget_groups": [[1, 1]]}) == [[1, 1]]


# --- training augmentation -------------------------------------------------------------------


def test_real_datasets_train_with_crop_flip_and_colored_mnist_keeps_shift(prepared, prep):
    assert train_augmentation(load(prepared, "celeba")) is random_resized_crop_flip
    assert train_augmentation(prep) is random_shift  # colored_mnist: meta has no "augment"


def test_crop_flip_matches_torchvision_resized_crop_and_flip():
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(12, 3, 20, 16)
    for flip_p in (0.0, 1.0):
        out = random_resized_crop_flip(x, torch.Generator().manual_seed(5), flip_p=flip_p)
        top, left, h, w = _crop_boxes(12, 20, 16, torch.Generator().manual_seed(5), (0.08, 1.0), (3 / 4, 4 / 3))
        ref = torch.stack(
            [TF.resized_crop(x[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), [20, 16]) for i in range(12)]
        )
        torch.testing.assert_close(out, ref.flip(-1) if flip_p else ref, atol=1e-5, rtol=0)
    assert (h * w <= 20 * 16).all() and (h * w >= 1).all()


def test_crop_flip_is_seeded_and_varies_per_image():
    x = torch.rand(8, 3, 16, 16)
    a = random_resized_crop_flip(x, torch.Generator().manual_seed(1))
    b = random_resized_crop_flip(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    full = random_resized_crop_flip(x, torch.Generator().manual_seed(1), scale=(1, 1), ratio=(1, 1), flip_p=0)
    torch.testing.assert_close(full, x)  # the whole image, unflipped: unchanged
    boxes = _crop_boxes(1000, 16, 16, torch.Generator().manual_seed(2), (0.08, 1.0), (3 / 4, 4 / 3))
    area = (boxes[2] * boxes[3]).double() / 256
    assert 0.45 < area.mean() < 0.6 and area.min() < 0.15  # E[area] ~ 0.54 (uniform in [0.08, 1])


# --- the pipeline on each fixture ------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_pipeline_runs_on_each_fixture(prepared, tmp_path, name):
    p = real_params(name, "unused")
    forget_set(p, prepared[name], 1.0, 0, tmp_path / "f.json")
    train_reference(p, prepared[name], 0, tmp_path / "pre.pt")
    train_reference(p, prepared[name], 0, tmp_path / "rw.pt", variant="reweight", forget_path=tmp_path / "f.json")
    unlearn(p, prepared[name], tmp_path / "pre.pt", tmp_path / "f.json", 0, tmp_path / "u.pt")
    res = evaluate(p, prepared[name], tmp_path / "u.npz", tmp_path / "f.json", "unlearned", tmp_path / "e.json")
    assert all(0 <= res["metrics"][k] <= 100 for k in ("RA", "UA", "TA", "MIA", "EO", "GA"))


def test_resnet18_at_32px(data_dir, tmp_path):
    p = real_params("waterbirds", data_dir, size=32, model={"arch": "resnet18", "width": 16, "pretrained": "none"})
    prepare(p, tmp_path / "prep")
    assert load_prepared(tmp_path / "prep").inputs.shape[1:] == (3, 32, 32)
    forget_set(p, tmp_path / "prep", 0.5, 0, tmp_path / "f.json")
    info = train_reference(p, tmp_path / "prep", 0, tmp_path / "pre.pt")
    assert info["n_train"] == 22
    unlearn(p, tmp_path / "prep", tmp_path / "pre.pt", tmp_path / "f.json", 0, tmp_path / "u.pt")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_resnet18_reads_local_imagenet_weights(tmp_path, suffix):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()  # timm's resnet18 uses the same keys
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    net = build_model({"arch": "resnet18", "width": 16, "pretrained": str(path)}, 3, (3, 32, 32))
    mine = net.body.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    path.write_bytes(b"not weights")
    with pytest.raises(GrmuError, match="cannot read .*weights"):
        build_model({"arch": "resnet18", "width": 16, "pretrained": str(path)}, 3, (3, 32, 32))


def test_large_datasets_decode_into_a_file_backed_buffer(data_dir, tmp_path, monkeypatch):
    import grmu.data.images as images

    monkeypatch.setattr(images, "IN_MEMORY_LIMIT", 0)
    prepare(real_params("celeba", data_dir), tmp_path / "prep")
    small = load_prepared(tmp_path / "prep").inputs
    monkeypatch.undo()
    prepare(real_params("celeba", data_dir), tmp_path / "prep2")
    assert torch.equal(small, load_prepared(tmp_path / "prep2").inputs)


# --- clear errors ----------------------------------------------------------------------------


def broken(tmp_path, name, breaker):
    """A fresh fixture of ``name`` under tmp_path/raw, damaged by ``breaker(base_folder)``."""
    base = fx.MAKERS[name](tmp_path / "raw")
    breaker(base)
    return tmp_path / "raw"


def expect_error(tmp_path, name, root, *fragments):
    out = tmp_path / "prep"
    with pytest.raises(GrmuError) as err:
        prepare(real_params(name, root), out)
    msg = str(err.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, msg
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "name,folder,hint",
    [
        ("celeba", "celeba", "mmlab.ie.cuhk.edu.hk"),
        ("waterbirds", "waterbird_complete95_forest2water2", "waterbird_complete95_forest2water2.tar.gz"),
        ("fairface", "fairface", "github.com/joojs/fairface"),
    ],
)
def test_missing_dataset_folder_says_where_and_how(tmp_path, name, folder, hint):
    expect_error(tmp_path, name, tmp_path / "nowhere", f"expected the folder {tmp_path / 'nowhere' / folder}", hint)


@pytest.mark.parametrize(
    "name,rel",
    [
        ("celeba", "list_eval_partition.txt"),
        ("celeba", "list_attr_celeba.txt"),
        ("waterbirds", "metadata.csv"),
        ("fairface", "fairface_label_val.csv"),
    ],
)
def test_missing_file_names_it(tmp_path, name, rel):
    root = broken(tmp_path, name, lambda base: (base / rel).unlink())
    expect_error(tmp_path, name, root, "not found: expected the file", rel)


def _drop_column(path, column):
    import pandas as pd

    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)


def _rename_attr(path):
    lines = path.read_text().split("\n")
    lines[1] = lines[1].replace("Blond_Hair", "Blonde_Hair")
    path.write_text("\n".join(lines))


@pytest.mark.parametrize(
    "name,breaker,fragments",
    [
        (
            "waterbirds",
            lambda b: _drop_column(b / "metadata.csv", "place"),
            ["metadata.csv lacks column(s) place", "img_filename, y, split, place"],
        ),
        (
            "fairface",
            lambda b: _drop_column(b / "fairface_label_train.csv", "service_test"),
            ["fairface_label_train.csv lacks column(s) service_test"],
        ),
        ("celeba", lambda b: _rename_attr(b / "list_attr_celeba.txt"), ["lacks attribute column(s) Blond_Hair"]),
    ],
)
def test_wrong_column_is_named(tmp_path, name, breaker, fragments):
    expect_error(tmp_path, name, broken(tmp_path, name, breaker), *fragments)


def test_unknown_label_value_is_named(tmp_path):
    def martian(base):
        path = base / "fairface_label_val.csv"
        path.write_text(path.read_text().replace("East Asian", "Martian"))

    expect_error(
        tmp_path,
        "fairface",
        broken(tmp_path, "fairface", martian),
        "column 'race' has the value 'Martian'",
        "valid: Black, Southeast Asian",
    )


def test_corrupt_and_missing_images_are_named(tmp_path):
    root = broken(tmp_path, "celeba", lambda b: (b / "img_align_celeba/000007.jpg").write_bytes(b"not a jpeg"))
    expect_error(tmp_path, "celeba", root, "corrupt image", "000007.jpg", "list_eval_partition.txt")
    root = broken(tmp_path / "w", "waterbirds", lambda b: None)
    first = next((root / "waterbird_complete95_forest2water2").glob("*/*.jpg"))
    first.unlink()
    expect_error(tmp_path, "waterbirds", root, "image file not found", first.name, "metadata.csv")


def _truncate_first_listed_image(base):
    import pandas as pd

    labels = pd.read_csv(base / "fairface_label_train.csv")
    path = base / labels["file"][labels["service_test"]].iloc[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a cut-off download
    (base / "truncated.txt").write_text(str(labels["file"][labels["service_test"]].iloc[0]))


def test_prepare_stage_fails_in_one_line_and_writes_nothing(tmp_path):
    root = broken(tmp_path, "fairface", _truncate_first_listed_image)
    name = (root / "fairface/truncated.txt").read_text()
    out = tmp_path / "prepared"
    params = {"dataset": "fairface", "data_dir": str(root), "datasets": {"fairface": {"image_size": 16}}}
    res = run_stage("prepare.py", "--out", out, params=params, tmp_path=tmp_path)
    assert_one_line_error(res, "corrupt image", name, "fairface_label_train.csv", "Truncated")
    assert not out.exists()
    params["datasets"]["fairface"]["image_size"] = 4
    res = run_stage("prepare.py", "--out", out, params=params, tmp_path=tmp_path)
    assert_one_line_error(res, "datasets.fairface.image_size must be an integer >= 8", "got 4")


# --- end to end: `dvc exp run` on a fixture --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,extra,n_groups,pool,epochs",
    [
        ("celeba", [], 1, 6, None),  # the fixture's 6 training blond males; the protocol's 30 epochs
        ("waterbirds", [], 1, 4, 2),  # its 4 waterbirds on land
        ("fairface", ["-S", "forget.multi_group=3"], 9, None, 2),  # the pool depends on the seeded 90/10 split
    ],
)
def test_dvc_exp_run_on_a_real_dataset_fixture(tmp_path, name, extra, n_groups, pool, epochs):
    """The dataset's training protocol as is (nothing shrunk but the images and, where ``epochs``
    is set, the number of epochs: CelebA runs the paper's 30, the others 2 with every other setting
    their protocol's): ResNet-18 from the fixture's weights, the paper's lr, batch, schedule and
    Group-DRO settings, recorded in the checkpoints."""
    from tests._repo import copy_repo, dvc, ran_stages
    from tests.test_protocols import PAPER

    root = fx.make_weights(fx.MAKERS[name](tmp_path / "raw").parent)
    shrunk = {} if epochs is None else {"epochs": epochs, "warmup_epochs": 0}
    protocol = {
        "model": {"width": None},
        "train": {"epochs": None, "batch_size": None, "warmup_epochs": None, **shrunk},
    }
    path, run = copy_repo(tmp_path / "repo", {"ratios": [0.5], **protocol})
    res = dvc(
        run,
        "exp",
        "run",
        "-S",
        f"dataset={name}",
        "-S",
        f"data_dir={root}",
        "-S",
        f"datasets.{name}.image_size=16",
        *extra,
    )
    stages = ran_stages(res.stdout)
    assert {
        "prepare",
        "forget_set@1",
        "pretrain@1",
        "retrain@reweight-1",
        "unlearn@1",
        "evaluate@unlearned",
        "aggregate",
    } <= stages
    meta = json.loads((path / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == name and meta["input_shape"] == [3, 16, 16]
    forget = json.loads((path / "data/forget/1/0.5.json").read_text())
    assert len(forget["groups"]) == n_groups and forget["size"] == forget["pool_size"] // 2
    assert pool is None or forget["pool_size"] == pool
    summary = json.loads((path / "metrics/summary.json").read_text())
    assert 0 < summary["avg_gap"] <= 100
    assert name in (path / "metrics/table.md").read_text()
    want = PAPER[name]
    pre = torch.load(path / "models/pretrain/1.pt", weights_only=True)["info"]
    gdro = torch.load(path / "models/retrain_gdro/1/0.5.pt", weights_only=True)["info"]
    assert pre["model"] == {**want["model"], "pretrained": str(root / "resnet18.a1_in1k.safetensors")}
    assert {k: pre["train"][k] for k in want["train"]} == {**want["train"], **shrunk}
    assert len(pre["history"]) == (epochs or 30)
    g = want["gdro"]
    assert (gdro["train"]["lr"], gdro["train"]["batch_size"], gdro["eta"], gdro["model"]["precision"]) == (
        g["lr"],
        g["batch_size"],
        g["eta"],
        g["precision"],
    )
