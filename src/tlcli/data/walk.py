"""Walking a data folder: hidden entries pruned, each folder and file taken once, and every link
not followed kept with the reason.

A user may keep a class's images elsewhere and link them in, so links that lead out of the data
folder are followed. A link back into it (``ln -s . again``, ``ln -s .. up``) is not: what it
leads to is counted where it is, and following it would count the same images again, under
another class or split, or for ever. A link to a folder that holds the data folder, or holds the
link itself, is a loop by a longer road. Folders are known by device and inode, files outside the
data folder by their real path, so what two links lead to is taken once.
"""

from __future__ import annotations

import os
from pathlib import Path

from tlcli.data.dataset import SkippedFile
from tlcli.data.images import is_hidden


def _within(path: str, folder: str) -> bool:
    """For real paths; asked of every file, so a string test rather than ``os.path.commonpath``."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class FolderWalk:
    def __init__(self, root: Path):
        self.root = os.path.realpath(root)
        self._walked: dict[tuple[int, int], Path] = {}
        self._outside_files: dict[str, Path] = {}
        # By path: the root is listed once to find split folders and again to find classes.
        self._skipped: dict[Path, SkippedFile] = {}

    @property
    def skipped(self) -> list[SkippedFile]:
        return list(self._skipped.values())

    def folders(self, folder: Path) -> list[Path]:
        """The visible folders in ``folder``, links that may be followed included."""
        return [path for path, _, is_dir in self._entries(folder, os.path.realpath(folder)) if is_dir]

    def files(self, folder: Path) -> list[Path]:
        """Every visible file below ``folder`` in a stable order: a folder's files, then its
        folders one after the other, each in name order."""
        found = []
        pending = [(folder, os.path.realpath(folder))]
        while pending:
            path, real = pending.pop()
            try:
                if not self._first_visit(path, real):
                    continue
                entries = sorted(self._entries(path, real), key=lambda entry: entry[0].name)
            except OSError:  # as os.walk: a folder that cannot be listed holds nothing
                continue
            found += [file for file, file_real, is_dir in entries if not is_dir and self._first_file(file, file_real)]
            pending += reversed([(sub, sub_real) for sub, sub_real, is_dir in entries if is_dir])
        return found

    def _entries(self, folder: Path, real: str) -> list[tuple[Path, str, bool]]:
        """The visible entries of ``folder`` as (path, real path, is a folder), less links not to follow.

        Listed by its real path: by the path shown, each link on the way is resolved again, and
        a path through more than 40 links cannot be opened at all."""
        with os.scandir(real) as listing:
            visible = [entry for entry in listing if not is_hidden(entry.name)]
        entries = []
        for entry in visible:
            path = folder / entry.name
            if not entry.is_symlink():
                entries.append((path, os.path.join(real, entry.name), entry.is_dir()))
                continue
            target = self._link_target(path, real)
            if target is not None:
                entries.append((path, target, os.path.isdir(target)))
        return entries

    def _link_target(self, link: Path, folder_real: str) -> str | None:
        """The real path ``link`` leads to, or None (the reason kept) when it is not to be followed."""
        located = os.path.join(folder_real, link.name)
        target = os.path.realpath(located)
        reason = self._why_not_follow(located, target, folder_real)
        if reason:
            self._skip(link, reason)
            return None
        return target

    def _why_not_follow(self, located: str, target: str, folder_real: str) -> str | None:
        try:
            os.stat(target)
        except OSError as exc:
            return f"link to {os.readlink(located)}, which leads nowhere ({exc.strerror})"
        if _within(target, self.root):
            return f"link to {target}, inside the data folder: not followed, so nothing there is counted twice"
        if _within(self.root, target) or _within(folder_real, target):
            return f"link to {target}, a folder it is inside: not followed (a loop)"
        return None

    def _first_visit(self, folder: Path, real: str) -> bool:
        info = os.stat(real)
        first = self._walked.setdefault((info.st_dev, info.st_ino), folder)
        if first == folder:
            return True
        self._skip(folder, f"leads to {real}, already walked as {first}")
        return False

    def _first_file(self, path: Path, real: str) -> bool:
        """Files inside the data folder are reached once (no link into it is followed); one
        outside may be reached by several links."""
        if _within(real, self.root):
            return True
        first = self._outside_files.setdefault(real, path)
        if first == path:
            return True
        self._skip(path, f"same file as {first}")
        return False

    def _skip(self, path: Path, reason: str) -> None:
        self._skipped[path] = SkippedFile(str(path), reason)
