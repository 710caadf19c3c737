"""Your own data: every file format round-trips, bad files fail clearly, and a checkpoint is
never paired with other data than it was trained on (identity = content hash)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.cli import main
from scoresde.data import (
    ArrayDataset,
    DataError,
    DataMismatchError,
    ImageDataset,
    data_identity,
    load_data,
    same_data,
    suggest_sigma_max,
)
from scoresde.train import load_model, train_toy
from scoresde.train.data import reference_data

SMALL = ["--width", "16", "--depth", "1", "--batch-size", "32", "--log-every", "5", "--no-progress"]


@pytest.fixture
def points() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(50, 2)) * [3.0, 0.5] + [1.0, -2.0]


def test_array_files_round_trip(tmp_path: Path, points: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", points)
    torch.save(torch.from_numpy(points), tmp_path / "a.pt")
    torch.save({"x": torch.from_numpy(points)}, tmp_path / "d.pt")
    np.savetxt(tmp_path / "h.csv", points, delimiter=",", header="x1,x2", comments="")
    np.savetxt(tmp_path / "n.csv", points, delimiter=",")
    np.savetxt(tmp_path / "t.tsv", points, delimiter="\t")
    np.savetxt(tmp_path / "w.txt", points)
    for name in ("a.npy", "a.pt", "d.pt", "h.csv", "n.csv", "t.tsv", "w.txt"):
        ds = load_data(tmp_path / name)
        assert isinstance(ds, ArrayDataset) and ds.shape == (2,) and len(ds) == 50, name
        # savetxt writes 18 significant digits: the text formats reproduce float64 exactly
        np.testing.assert_array_equal(ds.data.numpy(), points, err_msg=name)
        assert same_data(data_identity(ds, name="x"), data_identity(points, name="y")), name
    x = load_data(tmp_path / "a.npy").sample(7, generator=torch.Generator().manual_seed(1))
    assert x.shape == (7, 2) and all((row == torch.from_numpy(points).float()).all(1).any() for row in x)


def test_image_folder_gray_rgb_and_resize(tmp_path: Path) -> None:
    gray, rgb = tmp_path / "gray", tmp_path / "rgb"
    gray.mkdir()
    (rgb / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, size=(3, 6, 4), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(g[i], mode="L").save(gray / f"{i}.png")
    c = rng.integers(0, 256, size=(2, 6, 4, 3), dtype=np.uint8)
    Image.fromarray(c[0], mode="RGB").save(rgb / "0.png")
    Image.fromarray(c[1], mode="RGB").save(rgb / "sub" / "1.png")
    ds = load_data(gray)
    assert isinstance(ds, ImageDataset) and ds.images.shape == (3, 1, 6, 4)
    # k in 0..255 maps to k/127.5 - 1 exactly (float32 round-off of that number)
    np.testing.assert_allclose(ds.images[:, 0].numpy(), g / 127.5 - 1.0, rtol=0, atol=1e-6)
    ds = load_data(rgb)
    assert ds.images.shape == (2, 3, 6, 4)
    np.testing.assert_allclose(ds.images[1].permute(1, 2, 0).numpy(), c[1] / 127.5 - 1.0, atol=1e-6)
    assert load_data(rgb, image_size=8).images.shape == (2, 3, 8, 8)
    assert load_data(gray, channels=3).images.shape == (3, 3, 6, 4)
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(gray / "odd.png")
    with pytest.raises(DataError, match="differ in size.*image-size"):
        load_data(gray)
    assert load_data(gray, image_size=(6, 4)).images.shape == (4, 1, 6, 4)


def test_bad_data_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no data file"):
        load_data(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="unknown data 'rign'.*ring"):
        load_data("rign")
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(DataError, match=r"shape \(N, D\).*\(N, 1\)"):
        load_data(tmp_path / "flat.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 2)))
    with pytest.raises(DataError, match="empty"):
        load_data(tmp_path / "empty.npy")
    bad = np.ones((4, 2))
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="1 of 4 rows.*NaN.*row index 2, counting from 0"):
        load_data(tmp_path / "nan.npy")
    (tmp_path / "hdr.csv").write_text("x,y\n")
    with pytest.raises(DataError, match="no data rows"):
        load_data(tmp_path / "hdr.csv")
    (tmp_path / "text.csv").write_text("1,2\n3,abc\n")
    with pytest.raises(DataError, match="not a numeric table"):
        load_data(tmp_path / "text.csv")
    (tmp_path / "noimg").mkdir()
    with pytest.raises(DataError, match="no PNG/JPG/JPEG images"):
        load_data(tmp_path / "noimg")


def test_identity_is_a_content_hash() -> None:
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    a = data_identity(x, name="ring")
    assert a["kind"] == "array" and a["shape"] == [20, 2] and len(a["sha256"]) == 64
    assert same_data(a, data_identity(x.double(), name="other label"))  # values, not dtype or label
    y = x.clone()
    y[3, 0] += 1e-6
    assert not same_data(a, data_identity(y, name="ring"))
    assert not same_data(a, data_identity(load_data("ring"), name="ring", builtin=True))


def test_checkpoint_on_own_data_is_never_scored_against_the_builtin_of_the_same_name(
    tmp_path: Path, points: np.ndarray
) -> None:
    np.save(tmp_path / "mine.npy", points)
    run = tmp_path / "run"
    train_toy("ring", data=points, steps=3, out_dir=run, progress=False)
    _, _, config = load_model(run)
    assert config.data == "ring" and config.data_id["kind"] == "array"
    with pytest.raises(DataMismatchError, match=r"array 'ring' of shape \(50, 2\).*built-in data set 'ring'"):
        reference_data(config)
    with pytest.raises(DataMismatchError, match="array 'ring'.*but the data given is built-in data set 'ring'"):
        reference_data(config, "ring")
    other = tmp_path / "other.npy"
    np.save(other, points[:40])
    with pytest.raises(DataMismatchError, match=r"shape \(50, 2\).*but the data given is array.*\(40, 2\)"):
        reference_data(config, str(other))
    assert isinstance(reference_data(config, str(tmp_path / "mine.npy")), ArrayDataset)
    assert isinstance(reference_data(config, points), ArrayDataset)
    # The CLI: refused without --data (the message names both), accepted with the right file.
    assert main(["plot", "--checkpoint", str(run), "--out", str(tmp_path / "p"), "--what", "solver_grid",
                 "--n", "50", "--steps", "5", "--solvers", "euler_maruyama"]) == 2
    assert main(["plot", "--checkpoint", str(run), "--data", str(tmp_path / "mine.npy"),
                 "--out", str(tmp_path / "p"), "--what", "solver_grid", "--n", "50", "--steps", "5",
                 "--solvers", "euler_maruyama"]) == 0


def test_builtin_run_keeps_working_without_data(tmp_path: Path) -> None:
    from scoresde.data import toy

    run = tmp_path / "run"
    train_toy("ring", data=toy("ring"), steps=2, out_dir=run, progress=False)  # the built-in itself
    _, _, config = load_model(run)
    assert config.data_id == {"kind": "builtin", "source": "ring", "shape": [2]}
    assert type(reference_data(config)).__name__ == "Ring"


def test_cli_train_on_a_file_then_compare(tmp_path: Path, points: np.ndarray,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    np.savetxt(tmp_path / "pts.csv", points, delimiter=",", header="a,b", comments="")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "pts.csv"), "--steps", "4", "--out", str(run), *SMALL]) == 0
    _, _, config = load_model(run)
    assert config.data_id["kind"] == "array" and config.data_id["shape"] == [50, 2]
    # The file is still there: compare rebuilds and verifies it by itself.
    assert main(["compare", "--checkpoint", str(run), "--solvers", "euler_maruyama", "--steps", "4",
                 "--seeds", "0", "--n", "50", "--out", str(tmp_path / "c"), "--no-plots",
                 "--no-progress", "--floor-repeats", "1"]) == 0
    np.savetxt(tmp_path / "pts.csv", points[::-1], delimiter=",")  # same name, other content
    capsys.readouterr()
    assert main(["compare", "--checkpoint", str(run), "--solvers", "euler_maruyama", "--steps", "4",
                 "--seeds", "0", "--n", "50", "--out", str(tmp_path / "c2"), "--no-plots",
                 "--no-progress"]) == 2
    assert "sha256" in capsys.readouterr().err


def test_suggest_sigma_max_is_the_largest_pairwise_distance_in_many_dimensions() -> None:
    # Song & Ermon's technique 1 where the distance is the larger (images, many dimensions)
    from scoresde.data.scale import max_pairwise_distance, spread_sigma_max

    x = 0.5 * torch.randn(2000, 400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = max(max_pairwise_distance(x), float(x.norm(dim=1).max()))
    assert d > 3 * spread_sigma_max(x)  # ~17 against ~3.2
    assert suggest_sigma_max(x) == pytest.approx(d, rel=1e-12)
    assert suggest_sigma_max(ArrayDataset(x)) == pytest.approx(d, rel=1e-12)


def test_suggest_sigma_max_gives_the_prior_p_T_s_variance_in_few_dimensions() -> None:
    # An outside walkthrough of docs/guide_data.md: the suggested 7.27 for an arc of variance
    # 4.6 along one axis, and every sampler then warned that the samples come out 5% too narrow
    # ("a noise level of about 13.9 at T ... brings it within 2.5%").
    from scoresde.data.scale import largest_variance, spread_sigma_max

    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]], dtype=torch.float64)
    v_max = largest_variance(x)  # along the widest direction (the top eigenvalue of the covariance)
    assert suggest_sigma_max(x) == pytest.approx(spread_sigma_max(x), rel=1e-12)
    sigma = suggest_sigma_max(x)
    assert sigma > 5.0 and 1 - sigma / math.sqrt(sigma**2 + v_max) == pytest.approx(0.0125, rel=1e-9)


def test_cli_trains_the_image_recipe_on_an_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, size=(8, 8), dtype=np.uint8), mode="L").save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "2", "--batch-size", "4", "--out", str(run),
                 "--no-progress"]) == 0
    _, _, config = load_model(run)
    assert config.model.arch == "unet" and tuple(config.model.data_shape) == (1, 8, 8)
    assert config.data_id["kind"] == "array" and config.data_id["shape"] == [6, 1, 8, 8]


def test_fuzzed_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    from scoresde.data import image_grid

    # Unreadable files: a raw UnpicklingError / UnicodeDecodeError before.
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="junk.pt: not a readable torch file"):
        load_data(tmp_path / "junk.pt")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DataError, match="not a UTF-8 text table"):
        load_data(tmp_path / "binary.csv")
    # An empty name silently loaded the images of the working directory.
    with pytest.raises(ValueError, match="empty name"):
        load_data("")
    ds = ArrayDataset(np.ones((4, 2)))
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        ds.sample(2, generator=5)  # type: ignore[arg-type]  # AttributeError before
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        ds.sample(2, device="gpu")  # RuntimeError from torch before
    with pytest.raises(ValueError, match="n must be an integer"):
        ds.sample(2.0)  # type: ignore[arg-type]
    assert ds.sample(np.int64(3)).shape == (3, 2)  # an integer is an integer
    images = ImageDataset(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="n must be an integer"):
        images.sample(2.0)  # type: ignore[arg-type]  # a raw randint TypeError before
    # suggest_sigma_max returned 0.0 for NaN/inf data and a wrong value for a float seed / bad n.
    with pytest.raises(DataError, match="NaN or infinite"):
        suggest_sigma_max(torch.tensor([[float("nan"), 0.0], [1.0, 1.0]]))
    with pytest.raises(DataError, match=r"expected shape \(N, D\)"):
        suggest_sigma_max(torch.tensor(5.0))  # IndexError before
    with pytest.raises(ValueError, match="seed must be an integer"):
        suggest_sigma_max(torch.randn(5, 2), seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be a positive integer"):
        suggest_sigma_max(torch.ones(5, 2), n=-1)  # silently 0.0 before
    with pytest.raises(TypeError, match="load_data"):
        suggest_sigma_max("moons")
    assert suggest_sigma_max([[0.0, 0.0], [3.0, 4.0]]) == pytest.approx(6.27 * math.sqrt(12.5), rel=1e-3)
    # image_grid: a negative nrow / pad was a raw RuntimeError.
    with pytest.raises(ValueError, match="nrow"):
        image_grid(torch.zeros(2, 1, 8, 8), nrow=-1)
    with pytest.raises(ValueError, match="pad"):
        image_grid(torch.zeros(2, 1, 8, 8), pad=-1)
    with pytest.raises(ValueError, match="B >= 1"):
        image_grid(torch.zeros(0, 1, 8, 8))
    assert same_data({}, {}) is True  # KeyError 'kind' before


def test_the_suggested_sigma_max_leaves_the_samplers_prior_check_quiet() -> None:
    # Exact score of eight Gaussians (variance 2 per coordinate): the largest distance (5.0)
    # left the prior 6% short of p_T's variance and the sampler warned; the suggestion does not.
    import warnings

    import scoresde as sd
    import solvers
    from scoresde.data.scale import max_pairwise_distance

    target = sd.targets.eight_gaussians()
    x = target.sample(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def prior_warnings(sigma_max: float) -> list[str]:
        sde = sd.VESDE(sigma_max=sigma_max)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            solvers.sample(sde, target.score_fn(sde), shape=(2000, 2), solver="dpmpp_2m", steps=50, seed=0)
        return [str(w.message) for w in caught if isinstance(w.message, solvers.PriorMismatchWarning)]

    assert prior_warnings(max_pairwise_distance(x))
    assert not prior_warnings(suggest_sigma_max(x))
