"""Shared test helpers: run the CLI in-process, and write real image files."""

from __future__ import annotations

import shutil
import tempfile
import os
from pathlib import Path

import pytest
import torch

from tests.helpers import CliResult, TinyRun, make_class_folder, train_tiny_run
from tlcli.cli import main


@pytest.fixture(scope="module")
def _one_thread():
    """One intra-op thread: on a small, shared machine two threads spin against each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# Where tlcli, torch and Hugging Face look for the user's runs, data and downloaded weights.
_USER = pytest.StashKey[tuple]()
_USER_LOCATIONS = ("TLCLI_CHECKPOINTS_DIR", "TLCLI_DATA_DIR", "TLCLI_CACHE_DIR", "TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME")


def pytest_configure(config):
    """Every test, and every process a test starts, runs in a scratch folder with its own
    checkpoints, data and caches, and without the user's TLCLI_* or Hugging Face settings: a
    suite run after ``make demo`` must neither see the demo's runs nor touch them. Done here,
    before any test module is imported, because huggingface_hub (imported by ``datasets``) reads
    HF_HOME once, at import. ``isolated`` then gives a test folders of its own."""
    home = Path(tempfile.mkdtemp(prefix="tlcli-tests-user-"))
    config.stash[_USER] = (dict(os.environ), os.getcwd(), home)
    for name in [name for name in os.environ if name.startswith(("TLCLI_", "HF_"))]:
        del os.environ[name]
    os.environ.update({name: str(home / name.lower()) for name in _USER_LOCATIONS})
    os.chdir(home)


def pytest_unconfigure(config):
    saved, cwd, home = config.stash[_USER]
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def checkpoints_dir(tmp_path) -> Path:
    """Where ``isolated`` points TLCLI_CHECKPOINTS_DIR; a module overrides it to share a trained run."""
    return tmp_path / "checkpoints"


@pytest.fixture
def isolated(tmp_path, monkeypatch, checkpoints_dir):
    """Keep a test off the user's folders: run in tmp_path, with its own checkpoints, data and cache.

    Modules opt in for every test with ``pytestmark = pytest.mark.usefixtures("isolated")``.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TLCLI_CHECKPOINTS_DIR", str(checkpoints_dir))
    monkeypatch.setenv("TLCLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TLCLI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def run_cli(capsys):
    """Call ``tlcli ARGS`` in this process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def tiny(tmp_path) -> Path:
    """Twelve 8x8 images of two classes: an epoch of an mlp takes milliseconds."""
    return make_class_folder(tmp_path / "tiny", {"a": 6, "b": 6}, size=(8, 8))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """A one-epoch mlp trained once per session on twelve 8x8 images of classes a and b (4 held
    out for val, no test split), as the run ``tiny-run`` under its own checkpoints folder (so
    also the latest run there). Tests read it; those that write beside it use their own folders."""
    return train_tiny_run(tmp_path_factory.mktemp("tiny-run"))
