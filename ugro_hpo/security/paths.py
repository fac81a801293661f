"""Where ugro_hpo writes, checked before it writes there.

The outputs folder may be shared, or come with a checkout: whoever can write to it can plant
a symbolic link (``outputs/<study> -> ~/.ssh``) so that a run writes, or a database is created,
through it into a place of their choosing. Under the outputs folder, no link is ever written
through: the run directory, Ray's experiment directory, the study database (and SQLite's
companion files), the MLflow store and artifacts are refused with one line when a link stands
anywhere on their way; a file link where a single file goes is replaced instead (see
`results.writers`). The outputs folder itself may be a link: it is the user's own choice.

A file ugro_hpo writes replaces what stood there by a rename, so what stands there must be a
regular file or nothing: a directory, a device (``/dev/stdout``), a FIFO or a socket is
refused, as is a link to one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ugro_hpo.errors import ConfigError

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
# Names there stand for devices and processes (``/dev/stdout`` is a link to this process's
# descriptor 1, whatever it is): a file is never written, or a link replaced, there.
SYSTEM_DIRECTORIES = (Path("/dev"), Path("/proc"), Path("/sys"))


class OutputRefused(ConfigError):
    """A path ugro_hpo would write to is not one it may write to (the message says why)."""


def links_below(root: Path, path: Path) -> Path | None:
    """The first symbolic link on the way from ``root`` (not included) down to ``path``
    (included), or None. Paths are compared as written, made absolute, not resolved; a path
    that does not lie below ``root`` (also once ``root`` is resolved) is the user's choice and
    has none. What does not exist yet ends the walk."""
    root_abs = Path(os.path.abspath(root))
    target = Path(os.path.abspath(path))
    start = _start_below(root_abs, target)
    if start is None:
        return None
    current = start
    for part in target.relative_to(start).parts:
        current = current / part
        if current.is_symlink():
            return current
        if not current.exists():
            return None
    return None


def _start_below(root: Path, target: Path) -> Path | None:
    """The ancestor of ``target`` that is ``root`` (as written, or as it resolves)."""
    if target == root or root in target.parents:
        return root
    real_root = root.resolve()
    for ancestor in reversed(target.parents):
        if ancestor.resolve() == real_root:
            return ancestor
    return None


def refuse_links(root: Path, path: Path, what: str) -> None:
    """Refuse ``path`` when a link stands on its way below ``root`` (see `links_below`)."""
    link = links_below(root, path)
    if link is not None:
        raise OutputRefused(
            f"{what}: {link} is a symbolic link inside {root}/, and ugro_hpo never writes "
            "through one there (someone may have planted it); remove it, or choose another path"
        )


def refuse_run_paths(root: Path, paths: dict[str, Path]) -> None:
    """Every path a run writes under ``root``, checked before anything is written."""
    for what, path in paths.items():
        refuse_links(root, path, what)


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for another database or an in-memory one)."""
    if not url.startswith("sqlite:///"):
        return None
    name = url[len("sqlite:///") :].split("?", 1)[0]
    if not name or name == ":memory:" or name.startswith("file::memory:"):
        return None
    return Path(name)


def refuse_linked_database(url: str, what: str = "storage") -> None:
    """A SQLite database, or one of its companion files, that is a link is refused: SQLite
    would write through it."""
    path = sqlite_file(url)
    if path is None:
        return
    for suffix in SQLITE_COMPANIONS:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_symlink():
            raise OutputRefused(
                f"{what}: {candidate} is a symbolic link, and SQLite would write through it "
                "(someone may have planted it); remove it, or give the database's real path"
            )


def check_output_file(path: Path, what: str) -> None:
    """``path`` may receive a file: nothing stands there, or a regular file, or a link that
    leads to a regular file or nowhere (it is replaced, never written through)."""
    absolute = Path(os.path.abspath(path))
    system = next((d for d in SYSTEM_DIRECTORIES if d in absolute.parents), None)
    if system is not None:
        raise OutputRefused(
            f"{what}: {path} is a name in {system}/ (a device or a process), not a regular "
            "file; give the name of a file to write"
        )
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputRefused(f"{what}: cannot write {path} ({exc.strerror})") from None
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return  # a link to nothing: replaced
    if stat.S_ISREG(mode):
        return
    raise OutputRefused(
        f"{what}: {path} is {_kind(mode)}, not a regular file; give the name of a file to write"
    )


def check_output_dir(path: Path, what: str) -> None:
    """``path`` may receive files: a directory (or a link to one: the user named it), or a
    name not taken yet."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputRefused(f"{what}: cannot write to {path} ({exc.strerror})") from None
    if not stat.S_ISDIR(mode):
        raise OutputRefused(
            f"{what}: {path} is {_kind(mode)}, not a directory; give a directory, or a new name"
        )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file"
