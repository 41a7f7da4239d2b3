import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from resnetlab.data import download, open_dataset
from resnetlab.errors import UserError
from tests.cifar_files import CLASSES10, write_cifar10_binary, write_cifar10_python, write_cifar100_python


def test_cifar10_python_folder_reads_back_exactly(tmp_path):
    written = write_cifar10_python(tmp_path / "cifar-10-batches-py", train_per_batch=7, test=5, seed=1)
    ds = open_dataset(tmp_path)  # the parent folder is recognized too
    assert ds.format == "cifar10-python" and ds.classes == CLASSES10
    train = ds.splits["train"]
    assert np.array_equal(train.images, np.concatenate([x for x, _ in written["train"]]))
    assert np.array_equal(train.labels, np.concatenate([y for _, y in written["train"]]))
    assert np.array_equal(ds.splits["test"].images, written["test"][0])
    assert train.images.shape == (35, 32, 32, 3) and train.images.dtype == np.uint8


def test_cifar100_python_reads_fine_labels(tmp_path):
    written = write_cifar100_python(tmp_path / "cifar-100-python", train=30, test=10, seed=2)
    ds = open_dataset(tmp_path / "cifar-100-python")
    assert ds.format == "cifar100-python" and ds.classes == written["classes"]
    assert np.array_equal(ds.splits["train"].images, written["train"][0])
    assert np.array_equal(ds.splits["test"].labels, written["test"][1])


def test_cifar10_binary_reads_back_exactly(tmp_path):
    written = write_cifar10_binary(tmp_path / "cifar-10-batches-bin", per_batch=4, seed=3)
    ds = open_dataset(tmp_path / "cifar-10-batches-bin")
    assert ds.format == "cifar10-binary" and ds.classes == CLASSES10
    assert np.array_equal(ds.splits["test"].images, written["test_batch"][0])
    assert np.array_equal(ds.splits["train"].labels[:4], written["data_batch_1"][1])


def _tarball(path, folder, members=None):
    with tarfile.open(path, "w:gz") as tar:
        if folder is not None:
            tar.add(folder, arcname=folder.name)
        for name, data in (members or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_official_tarball_is_extracted_and_read(tmp_path):
    write_cifar10_python(tmp_path / "src" / "cifar-10-batches-py", train_per_batch=3, test=2, seed=4)
    _tarball(tmp_path / "cifar-10-python.tar.gz", tmp_path / "src" / "cifar-10-batches-py")
    ds = open_dataset(tmp_path / "cifar-10-python.tar.gz")
    assert len(ds.splits["train"]) == 15 and len(ds.splits["test"]) == 2


def test_tarball_escaping_its_folder_is_refused_and_nothing_written(tmp_path):
    _tarball(tmp_path / "evil.tar.gz", None, {"cifar-10-batches-py/batches.meta": b"x", "../../escaped.txt": b"gotcha"})
    with pytest.raises(UserError, match=r"refusing entry '../../escaped.txt'.*outside"):
        download.safe_extract(tmp_path / "evil.tar.gz", tmp_path / "target")
    assert not (tmp_path / "target").exists()
    assert not list(tmp_path.parent.rglob("escaped.txt"))
    link = tarfile.TarInfo("cifar-10-batches-py/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with tarfile.open(tmp_path / "link.tar", "w") as tar:
        tar.addfile(link)
    with pytest.raises(UserError, match="only plain files"):
        download.safe_extract(tmp_path / "link.tar", tmp_path / "target2")


class Payload:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED",))


def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10_python(root, train_per_batch=2, test=2, seed=5)
    with open(root / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(UserError, match=r"data_batch_3 is not a plain CIFAR pickle .*posix.system.*nothing in it was run"):
        open_dataset(root)
    assert not (tmp_path / "PWNED").exists()


def test_download_checks_md5_and_fails_clearly_offline(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_cifar10_python(src / "cifar-10-batches-py", train_per_batch=2, test=2, seed=6)
    archive = tmp_path / "cifar-10-python.tar.gz"
    _tarball(archive, src / "cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "cache"
    monkeypatch.setitem(download.ARCHIVES, "cifar10", (archive.as_uri(), md5, "cifar-10-batches-py"))
    folder = download.fetch("cifar10", root)
    assert (folder / "data_batch_1").is_file() and (root / "cifar-10-python.tar.gz").is_file()

    monkeypatch.setitem(download.ARCHIVES, "cifar100", (archive.as_uri(), "0" * 32, "cifar-100-python"))
    with pytest.raises(UserError, match="wrong MD5"):
        download.fetch("cifar100", tmp_path / "other")
    assert not list((tmp_path / "other").glob("*.tar.gz*"))

    monkeypatch.setitem(download.ARCHIVES, "cifar100", ("http://127.0.0.1:9/cifar-100-python.tar.gz", md5, "cifar-100-python"))
    with pytest.raises(UserError, match=r"could not download .*Offline\? Put the file at"):
        download.fetch("cifar100", tmp_path / "offline")


def test_missing_path_and_incomplete_folder(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        open_dataset(tmp_path / "nope")
    root = tmp_path / "cifar-10-batches-py"
    write_cifar10_python(root, train_per_batch=2, test=2, seed=7)
    (root / "data_batch_5").unlink()
    with pytest.raises(UserError, match="data_batch_5 is missing"):
        open_dataset(root)
