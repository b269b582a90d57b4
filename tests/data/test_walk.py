"""``tlcli.data.walk.FolderWalk``, called directly: hidden entries pruned, a stable order, links
followed only out of the data folder, each folder and file taken once, and every link not
followed kept with its reason."""

from __future__ import annotations

from pathlib import Path

from tlcli.data.walk import FolderWalk


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(path.name.encode())  # the walk lists files of any kind, images or not


def _link(link: Path, target) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _names(root: Path, paths: list[Path]) -> list[str]:
    return [path.relative_to(root).as_posix() for path in paths]


def _reasons(walk: FolderWalk) -> dict[str, str]:
    return {Path(skipped.path).name: skipped.reason for skipped in walk.skipped}


def test_hidden_files_and_folders_are_pruned(tmp_path):
    root = tmp_path / "data"
    _touch(root / "a" / "1.png", root / "a" / ".DS_Store", root / "a" / "._1.png", root / "a" / "Thumbs.db", root / "a" / "~$lock.docx",
           root / "a" / ".ipynb_checkpoints" / "2.png", root / "__MACOSX" / "a" / "3.png", root / ".git" / "4.png")
    walk = FolderWalk(root)
    assert _names(root, walk.files(root)) == ["a/1.png"]
    assert _names(root, walk.folders(root)) == ["a"]
    assert walk.skipped == []  # pruned silently: junk is not worth a line


def test_files_come_in_a_stable_order_a_folders_files_then_its_folders_in_name_order(tmp_path):
    root = tmp_path / "data"
    _touch(root / "b" / "z.png", root / "b" / "a.png", root / "b" / "sub2" / "y.png", root / "b" / "sub1" / "x.png",
           root / "b" / "sub1" / "deeper" / "w.png", root / "b" / "m.png")
    assert _names(root, FolderWalk(root).files(root / "b")) == [
        "b/a.png", "b/m.png", "b/z.png", "b/sub1/x.png", "b/sub1/deeper/w.png", "b/sub2/y.png"]


def test_links_out_of_the_data_folder_are_followed_under_the_links_name(tmp_path):
    root = tmp_path / "data"
    _touch(root / "cat" / "0.png", tmp_path / "elsewhere" / "dogs" / "1.png", tmp_path / "loose.png")
    _link(root / "dog", tmp_path / "elsewhere" / "dogs")
    _link(root / "cat" / "extra.png", tmp_path / "loose.png")
    walk = FolderWalk(root)
    assert sorted(_names(root, walk.folders(root))) == ["cat", "dog"]  # in listing order: callers sort
    assert _names(root, walk.files(root)) == ["cat/0.png", "cat/extra.png", "dog/1.png"]
    assert walk.skipped == []


def test_a_link_back_into_the_data_folder_is_not_followed(tmp_path):
    root = tmp_path / "data"
    _touch(root / "a" / "0.png", root / "b" / "1.png")
    _link(root / "a" / "again", ".")  # ln -s . again
    _link(root / "b" / "also-a", "../a")  # another class's images, counted twice
    _link(root / "b" / "same.png", "1.png")
    walk = FolderWalk(root)
    assert _names(root, walk.files(root)) == ["a/0.png", "b/1.png"]
    reasons = _reasons(walk)
    assert set(reasons) == {"again", "also-a", "same.png"}
    assert all("inside the data folder: not followed" in reason for reason in reasons.values())


def test_a_link_to_a_folder_holding_the_data_folder_is_a_loop(tmp_path):
    root = tmp_path / "outer" / "data"
    _touch(root / "a" / "0.png")
    _link(root / "a" / "up", "../../..")  # tmp_path: holds the data folder by a longer road
    walk = FolderWalk(root)
    assert _names(root, walk.files(root)) == ["a/0.png"]
    assert _reasons(walk)["up"] == f"link to {tmp_path.resolve()}, a folder it is inside: not followed (a loop)"


def test_a_dangling_link_is_skipped_with_where_it_pointed(tmp_path):
    root = tmp_path / "data"
    _touch(root / "a" / "0.png")
    _link(root / "a" / "gone.png", tmp_path / "unmounted" / "gone.png")
    walk = FolderWalk(root)
    assert _names(root, walk.files(root)) == ["a/0.png"]
    assert _reasons(walk)["gone.png"].startswith(f"link to {tmp_path / 'unmounted' / 'gone.png'}, which leads nowhere")


def test_what_two_links_lead_to_outside_is_taken_once(tmp_path):
    root, kept = tmp_path / "data", tmp_path / "kept"
    _touch(root / "a" / "0.png", kept / "k.png")
    _link(root / "a" / "kept", kept)
    _link(root / "a" / "k-again.png", kept / "k.png")  # the same file, through a file link
    _link(root / "b" / "kept-too", kept)  # the same folder, in another class
    walk = FolderWalk(root)
    # A folder's own files come before its folders: the file link is the first to reach k.png.
    assert _names(root, walk.files(root)) == ["a/0.png", "a/k-again.png"]
    reasons = _reasons(walk)
    assert reasons["k.png"] == f"same file as {root / 'a' / 'k-again.png'}"
    assert reasons["kept-too"] == f"leads to {kept.resolve()}, already walked as {root / 'a' / 'kept'}"


def test_listing_the_root_twice_keeps_each_skipped_link_once(tmp_path):
    root = tmp_path / "data"
    _touch(root / "a" / "0.png")
    _link(root / "loop", ".")
    walk = FolderWalk(root)
    # The root is listed for split folders and again for classes: one line per link still.
    assert walk.folders(root) == walk.folders(root) == [root / "a"]
    assert [Path(s.path).name for s in walk.skipped] == ["loop"]


def test_a_data_folder_reached_through_a_link_is_walked_by_its_real_path(tmp_path):
    real = tmp_path / "real"
    _touch(real / "a" / "0.png")
    shown = _link(tmp_path / "shown", real)
    _link(real / "a" / "self", "..")  # inside the data folder, whichever name the user gave it
    walk = FolderWalk(shown)
    assert _names(shown, walk.files(shown)) == ["a/0.png"]
    assert _reasons(walk)["self"] == f"link to {real.resolve()}, inside the data folder: not followed, so nothing there is counted twice"
