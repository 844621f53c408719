"""Dataset registry and download, offline: every URL is a file:// URL to a temporary file."""

import hashlib

import pytest

import sciflow.data.registry as data_registry
from sciflow.data import (
    DatasetSpec,
    RemoteFile,
    data_dir,
    fetch,
    format_dataset_table,
    get_dataset,
    list_datasets,
    register_dataset,
    sha256sum,
)

PAYLOADS = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 50}


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch):
    """Run every test against an empty registry of its own."""
    monkeypatch.setattr(data_registry, "_REGISTRY", {})


@pytest.fixture
def source(tmp_path):
    """Write PAYLOADS under tmp_path/source and return that folder."""
    folder = tmp_path / "source"
    for rel, data in PAYLOADS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def _spec(source, name="demo", digests=None):
    """Register a dataset over the files in ``source``; ``digests`` overrides checksums."""
    digests = digests or {}
    files = tuple(
        RemoteFile(
            url=(source / rel).as_uri(),
            sha256=digests.get(rel, hashlib.sha256(data).hexdigest()),
            relative_path=rel,
        )
        for rel, data in PAYLOADS.items()
    )
    return register_dataset(
        DatasetSpec(name=name, domain="toy", files=files, description="d", licence="CC0")
    )


def _leftovers(folder):
    """Temporary download files left anywhere under ``folder``."""
    return sorted(p.name for p in folder.rglob("*.part"))


def test_fetch_downloads_and_verifies(source, tmp_path):
    _spec(source)
    root = tmp_path / "cache"
    folder = fetch("demo", root=root, progress=False)
    assert folder == root / "toy" / "demo"
    for rel, data in PAYLOADS.items():
        assert (folder / rel).read_bytes() == data
    assert _leftovers(root) == []


def test_fetch_with_progress_bar(source, tmp_path, capsys):
    _spec(source)
    fetch("demo", root=tmp_path / "cache", progress=True)
    assert "a.txt" in capsys.readouterr().err


def test_fetch_skips_files_already_present(source, tmp_path):
    _spec(source)
    root = tmp_path / "cache"
    fetch("demo", root=root, progress=False)
    for rel in PAYLOADS:
        (source / rel).unlink()  # any new download would now fail
    assert fetch("demo", root=root, progress=False) == root / "toy" / "demo"
    with pytest.raises(OSError, match="download of file://"):
        fetch("demo", root=root, force=True, progress=False)


def test_fetch_replaces_a_corrupt_file(source, tmp_path):
    _spec(source)
    target = tmp_path / "cache" / "toy" / "demo" / "a.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupt")
    fetch("demo", root=tmp_path / "cache", progress=False)
    assert target.read_bytes() == PAYLOADS["a.txt"]


def test_checksum_mismatch_leaves_no_file(source, tmp_path):
    wrong = "0" * 64
    _spec(source, digests={"sub/b.bin": wrong})
    root = tmp_path / "cache"
    with pytest.raises(ValueError) as err:
        fetch("demo", root=root, progress=False)
    actual = hashlib.sha256(PAYLOADS["sub/b.bin"]).hexdigest()
    for part in ("sub/b.bin", wrong, actual):
        assert part in str(err.value)
    assert not (root / "toy" / "demo" / "sub" / "b.bin").exists()
    assert _leftovers(root) == []


def test_fetch_unknown_dataset_lists_known(source, tmp_path):
    _spec(source)
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*demo"):
        fetch("nope", root=tmp_path, progress=False)


def test_fetch_defaults_to_data_dir(source, tmp_path, monkeypatch):
    _spec(source)
    monkeypatch.setenv("SCIFLOW_DATA_DIR", str(tmp_path / "env"))
    assert fetch("demo", progress=False) == tmp_path / "env" / "toy" / "demo"


def test_data_dir_default(tmp_path, monkeypatch):
    monkeypatch.delenv("SCIFLOW_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == tmp_path / ".cache" / "sciflow" / "data"


def test_registry_lookup_and_duplicates(source):
    spec = _spec(source)
    assert list_datasets() == ["demo"]
    assert get_dataset("demo") is spec
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(spec)
    with pytest.raises(ValueError, match="registered datasets: demo"):
        get_dataset("other")


@pytest.mark.parametrize(
    ("url", "sha256", "relative_path"),
    [
        ("ftp://host/x", "a" * 64, "x"),
        ("https://host/x", "A" * 64, "x"),
        ("https://host/x", "a" * 63, "x"),
        ("https://host/x", "a" * 64, "../x"),
        ("https://host/x", "a" * 64, "/etc/x"),
        ("https://host/x", "a" * 64, ""),
    ],
)
def test_remote_file_rejects_bad_fields(url, sha256, relative_path):
    with pytest.raises(ValueError):
        RemoteFile(url=url, sha256=sha256, relative_path=relative_path)


def test_dataset_spec_rejects_bad_fields():
    f = RemoteFile(url="https://host/x", sha256="a" * 64, relative_path="x")
    with pytest.raises(ValueError, match="name"):
        DatasetSpec(name="../up", domain="toy", files=(f,), description="", licence="")
    with pytest.raises(ValueError, match="non-empty tuple"):
        DatasetSpec(name="d", domain="toy", files=(), description="", licence="")
    with pytest.raises(ValueError, match="twice"):
        DatasetSpec(name="d", domain="toy", files=(f, f), description="", licence="")


def test_sha256sum(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256sum(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_format_dataset_table(source, tmp_path):
    _spec(source)
    root = tmp_path / "cache"
    lines = format_dataset_table(root).splitlines()
    assert lines[0].split() == ["dataset", "domain", "files", "local", "description"]
    assert lines[1].split() == ["demo", "toy", "2", "missing", "d"]
    fetch("demo", root=root, progress=False)
    assert format_dataset_table(root).splitlines()[1].split()[3] == "present"
