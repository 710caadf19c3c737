"""Unusual data files: 16-bit images, mixed sizes, folders with a dot, sparse / long-double
arrays, pandas-style and tab-separated CSV files, each read correctly or refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.cli import main
from scoresde.data import DataError, load_array, load_data, load_image_folder


def test_16bit_png_uses_its_full_range(tmp_path: Path) -> None:
    # Pillow's convert("L") clipped 16-bit values at 255: 0..65535 became -1 or 1, nothing between.
    k = np.array([[0, 255, 32768, 65535]] * 2, dtype=np.uint16)
    for i in range(2):
        Image.fromarray(k).save(tmp_path / f"{i}.png")
    assert Image.open(tmp_path / "0.png").mode.startswith("I")
    ds = load_image_folder(tmp_path)
    assert ds.shape == (1, 2, 4)
    np.testing.assert_allclose(ds.images[0, 0, 0].numpy(), k[0] / 32767.5 - 1.0, atol=1e-6)
    assert load_image_folder(tmp_path, channels=3).shape == (3, 2, 4)
    assert 0.0 < float(load_image_folder(tmp_path, size=(1, 2)).images.max()) < 1.0  # resized, not clipped


def test_mixed_size_error_names_the_real_keyword(tmp_path: Path) -> None:
    # It said "pass size=H (CLI: --image-size H)": the keyword is image_size and no command has that option.
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="differ in size") as err:
        load_data(tmp_path)
    assert "image_size=H" in str(err.value) and "--image-size H" not in str(err.value)
    assert load_data(tmp_path, image_size=4).shape == (1, 4, 4)


def test_likelihood_reads_an_image_folder_with_a_dot_in_its_name(tmp_path: Path) -> None:
    # "no data file at my.images": any path with a suffix was read as an array file.
    folder = tmp_path / "my.images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(folder / f"{i}.png")
    run, out = tmp_path / "run", tmp_path / "ll.npy"
    assert main(["train", "--data", str(folder), "--steps", "1", "--model", "mlp", "--width", "8", "--depth", "1",
                 "--batch-size", "4", "--out", str(run), "--no-progress"]) == 0
    assert main(["likelihood", "--checkpoint", str(run), "--data", str(folder), "--n", "3", "--integrator", "euler",
                 "--steps", "2", "--grid", "uniform", "--out", str(out), "--no-progress"]) == 0
    assert np.load(out).shape[0] == 3


def test_sparse_and_long_double_arrays_are_read_or_named(tmp_path: Path) -> None:
    # A sparse tensor gave "reshape is not implemented for sparse tensors"; a np.longdouble array
    # torch's "can't convert np.ndarray of type numpy.longdouble" without the file name.
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    torch.save(x.to_sparse(), tmp_path / "sparse.pt")
    assert torch.equal(load_array(tmp_path / "sparse.pt").data, x)
    wide = np.array([[1.5, 2.0], [3.0, 4.0]], dtype=np.longdouble)
    np.save(tmp_path / "ld.npy", wide)
    got = load_array(tmp_path / "ld.npy").data
    assert got.dtype == torch.float64 and got.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    if np.finfo(np.longdouble).max > np.finfo(np.float64).max:  # x86: 80-bit; elsewhere it may be float64
        wide[1, 0] = np.longdouble("1e400")
        np.save(tmp_path / "ld_big.npy", wide)
        with pytest.raises(DataError, match=r"ld_big\.npy: row 1 .*float64 range"):
            load_array(tmp_path / "ld_big.npy")


def test_csv_index_column_and_tab_separated_csv(tmp_path: Path) -> None:
    # pandas' to_csv index (",a,b" header) became an extra dimension; a tab-separated .csv lost its
    # first row as a "header".
    (tmp_path / "pd.csv").write_text(",a,b\n0,1.5,2\n1,3,4\n2,5,6\n")
    assert load_array(tmp_path / "pd.csv").data.tolist() == [[1.5, 2.0], [3.0, 4.0], [5.0, 6.0]]
    (tmp_path / "tabs.csv").write_text("1\t2\n3\t4\n5\t6\n")
    assert load_array(tmp_path / "tabs.csv").data.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    (tmp_path / "plain.csv").write_text("a,b\n1,2\n3,4\n")  # unchanged: a named header is skipped
    assert load_array(tmp_path / "plain.csv").data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_a_pt_file_that_is_not_plain_tensors_is_not_told_to_unpickle_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # torch's first line advised re-running torch.load with weights_only=False, which "will likely
    # succeed": for a file that is not a torch file at all, and a risk for one that holds objects.
    from scoresde.data import DataError, load_data
    junk, objs = tmp_path / "junk.pt", tmp_path / "objs.pt"
    junk.write_text("not a torch file\n")
    torch.save([torch.zeros(2), slice(1, 2)], objs)
    with pytest.raises(DataError, match="neither a zip archive") as err:
        load_data(junk)
    assert "weights_only" not in str(err.value)
    with pytest.raises(DataError, match="holds objects other than tensors") as err:
        load_data(objs)
    assert "weights_only" not in str(err.value)


def test_a_comma_separated_txt_file_is_read_as_such(tmp_path: Path) -> None:
    # Its first row was taken as a header, and line 2 reported as "'3,4' is not a number".
    for text in ("1,2\n3,4\n5,6\n", "1, 2\n3, 4\n5, 6\n"):
        (tmp_path / "t.txt").write_text(text)
        np.testing.assert_array_equal(load_array(tmp_path / "t.txt").data.numpy(), [[1, 2], [3, 4], [5, 6]])
    (tmp_path / "w.txt").write_text("1 2\n3 4\n")
    np.testing.assert_array_equal(load_array(tmp_path / "w.txt").data.numpy(), [[1, 2], [3, 4]])


def test_a_one_line_table_of_words_names_the_line_it_read_as_a_header(tmp_path: Path) -> None:
    # 'True,False' alone used to give "the file has a header but no data rows", leaving the user
    # to guess which line was the header and why.
    path = tmp_path / "flags.csv"
    path.write_text("True,False\n")
    with pytest.raises(DataError, match=r"its only line, 'True,False', is not all numbers.*booleans as 1 / 0"):
        load_array(path)
    path.write_text("1,0\n")  # a one-line numeric table is data
    data = load_array(path)
    assert len(data) == 1 and data.shape == (2,)
