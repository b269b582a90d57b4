"""``tlcli.run.locate``: the checkpoints root, a new run's default name, ``checkpoints/latest``
(relative under the root, absolute elsewhere) and ``resolve_checkpoint`` finding a checkpoint
from a file, a run folder, a run name under $TLCLI_CHECKPOINTS_DIR, or the latest run."""

from __future__ import annotations

import os
import re
from datetime import datetime

import pytest

from tlcli.core.errors import CheckpointError
from tlcli.run.locate import LATEST, checkpoints_root, default_run_name, point_latest, resolve_checkpoint

pytestmark = pytest.mark.usefixtures("isolated")


def _run(folder, *names):
    """A run folder holding the named checkpoint files (their contents are never read here)."""
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"checkpoint")
    return folder


def test_the_root_is_the_environments_else_checkpoints(checkpoints_dir, monkeypatch):
    assert checkpoints_root() == checkpoints_dir
    monkeypatch.delenv("TLCLI_CHECKPOINTS_DIR")
    assert str(checkpoints_root()) == "checkpoints"


def test_default_run_name_is_data_arch_and_the_time():
    before = datetime.now().replace(microsecond=0)
    name = default_run_name("/data/sets/pets", "resnet18")
    after = datetime.now()
    stem, stamp = name[:-16], name[-15:]
    assert stem == "pets-resnet18"
    assert before <= datetime.strptime(stamp, "%Y%m%d-%H%M%S") <= after


def test_default_run_name_keeps_only_characters_safe_in_a_folder_name():
    name = default_run_name("hf:user/my data set", "timm:vit_tiny_patch16_224", "-ft")
    assert re.fullmatch(r"my_data_set-timm_vit_tiny_patch16_224-ft-\d{8}-\d{6}", name)
    assert re.fullmatch(r"digits-mlp-\d{8}-\d{6}", default_run_name("digits", "mlp"))


def test_latest_points_relatively_at_a_run_under_the_root(checkpoints_dir):
    run = _run(checkpoints_dir / "first", "best.pt")
    point_latest(run)
    assert os.readlink(checkpoints_dir / LATEST) == "first"
    # A relative link survives the whole folder moving.
    moved = checkpoints_dir.rename(checkpoints_dir.with_name("moved"))
    assert (moved / LATEST / "best.pt").is_file()


def test_latest_points_absolutely_at_a_run_elsewhere(checkpoints_dir, tmp_path):
    run = _run(tmp_path / "elsewhere" / "run", "best.pt")
    point_latest(run)
    assert os.readlink(checkpoints_dir / LATEST) == str(run.resolve())


def test_latest_is_replaced_and_a_temporary_link_left_by_a_kill_is_reused(checkpoints_dir):
    first, second = _run(checkpoints_dir / "first"), _run(checkpoints_dir / "second")
    point_latest(first)
    os.symlink("first", checkpoints_dir / f".{LATEST}.tmp")  # a kill between the two steps
    point_latest(second)
    assert os.readlink(checkpoints_dir / LATEST) == "second"
    assert not os.path.lexists(checkpoints_dir / f".{LATEST}.tmp")


def test_a_checkpoint_file_is_taken_as_it_is(tmp_path):
    path = tmp_path / "somewhere" / "epoch-3.pt"
    path.parent.mkdir()
    path.write_bytes(b"checkpoint")
    assert resolve_checkpoint(str(path)) == path


def test_a_run_folder_gives_best_pt_or_the_preferred_or_last_pt(tmp_path):
    both = _run(tmp_path / "both", "best.pt", "last.pt")
    assert resolve_checkpoint(str(both)) == both / "best.pt"
    assert resolve_checkpoint(str(both), prefer="last.pt") == both / "last.pt"
    only_last = _run(tmp_path / "only-last", "last.pt")
    assert resolve_checkpoint(str(only_last)) == only_last / "last.pt"


def test_a_run_folder_without_checkpoints_is_an_error(tmp_path):
    empty = _run(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="holds no best.pt or last.pt"):
        resolve_checkpoint(str(empty))


def test_a_run_name_is_looked_up_under_the_checkpoints_root(checkpoints_dir):
    run = _run(checkpoints_dir / "pets-resnet18-20240101-120000", "best.pt")
    assert resolve_checkpoint("pets-resnet18-20240101-120000") == run / "best.pt"


def test_nothing_named_means_the_latest_run_named_by_its_real_folder(checkpoints_dir, tmp_path):
    run = _run(checkpoints_dir / "first", "best.pt", "last.pt")
    point_latest(run)
    assert resolve_checkpoint(None) == checkpoints_dir / "first" / "best.pt"
    elsewhere = _run(tmp_path / "elsewhere", "last.pt")
    point_latest(elsewhere)
    assert resolve_checkpoint(None) == elsewhere.resolve() / "last.pt"


def test_no_run_yet_and_an_unknown_name_are_errors(checkpoints_dir):
    with pytest.raises(CheckpointError, match="no run yet in"):
        resolve_checkpoint(None)
    with pytest.raises(CheckpointError, match=f"no checkpoint or run 'nope' .*{checkpoints_dir / 'nope'}"):
        resolve_checkpoint("nope")


def test_a_run_of_the_current_or_parent_folder_is_named_after_it_never_hidden(tmp_path, monkeypatch):
    (tmp_path / "flowers" / "inner").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "flowers" / "inner")
    assert default_run_name(".", "mlp").startswith("inner-mlp-")
    assert default_run_name("..", "mlp").startswith("flowers-mlp-")
