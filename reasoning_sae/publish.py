"""Publishing a directory atomically, and one run at a time per artifact.

`atomic_dir` builds into `.<name>.tmp-<pid>` beside the final directory and publishes it with one atomic step:
a rename when nothing is there yet, otherwise Linux's `renameat2(RENAME_EXCHANGE)`, which swaps the new and the old
directory in one system call, so a reader, or a kill, sees the old artifact or the new one, never neither. Where the
exchange is unavailable (another OS or file system) it falls back to two renames, and the next `atomic_dir` of the
same path puts a stranded old artifact back. Temporaries of processes that no longer run are removed then too.

`stage_lock` serialises the runs of one stage: a second run waits for the first, then finds its artifact up to date.
"""

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic system call; False where the OS or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def leftovers(final: Path) -> list[tuple[Path, str, int]]:
    """`(path, kind, pid)` of the temporaries of `final` that a build or a publish left beside it."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)$")
    if not final.parent.is_dir():
        return []
    found = ((p, pattern.match(p.name)) for p in final.parent.iterdir())
    return [(p, m[1], int(m[2])) for p, m in found if m]


def clean_stale(final: Path) -> None:
    """Put back an old artifact a killed two-rename publish stranded; remove temporaries of dead processes."""
    for path, kind, pid in leftovers(final):
        if _alive(pid):
            continue
        if kind == "old" and not final.exists():
            path.rename(final)
            log.warning("restored %s from an interrupted publish (pid %d)", final, pid)
        else:
            shutil.rmtree(path, ignore_errors=True)


def publish(tmp: Path, final: Path) -> None:
    """Make the complete directory `tmp` the one at `final` in one atomic step where the OS allows."""
    if not final.exists():
        tmp.rename(final)
    elif _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old artifact
    else:
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temporary directory beside `final`; on success it replaces `final`, on error it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, final)


@contextlib.contextmanager
def stage_lock(final: Path):
    """Hold `.<name>.lock` beside `final` while a run builds it; a second run waits and says whom it waits for.

    The lock file is removed on release. A waiter that then holds a lock on the removed file notices that the path
    now names another file (or none) and locks again, so two runs never both hold the lock."""
    final.parent.mkdir(parents=True, exist_ok=True)
    path = final.with_name(f".{final.name}.lock")
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not waited:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                log.warning("%s: another run (pid %s) is building it; waiting for it to finish", final, holder)
                waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
