"""Where things live: the repository, the data, the cache; and safe file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_root() -> Path:
    """Return the repository root (the folder holding `xinterp_utils/`)."""
    return REPO_ROOT


def cache_dir() -> Path:
    """Return the cache folder (built encoders, featurised data), created if missing.

    `$XINTERP_CACHE` wins; else `$XDG_CACHE_HOME/xinterp`; else `~/.cache/xinterp`.
    """
    if os.environ.get("XINTERP_CACHE"):
        path = Path(os.environ["XINTERP_CACHE"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = base / "xinterp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline_data_dir() -> Path | None:
    """Return the offline data folder (one holding `manifest.json`), or None if there is none.

    `$XINTERP_DATA` wins (and must hold a manifest); else `../shared/data` beside the repo.
    """
    env = os.environ.get("XINTERP_DATA")
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / "manifest.json").is_file():
            raise FileNotFoundError(
                f"XINTERP_DATA={env!r}: no manifest.json in {path}"
            )
        return path
    guess = (REPO_ROOT.parent / "shared" / "data").resolve()
    return guess if (guess / "manifest.json").is_file() else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside `path`; on success rename it over `path`.

    A crash or exception leaves `path` as it was (no half-written file ever replaces
    a good one) and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; results and figures should get the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `folder` when its writer was killed
    (SIGKILL skips its clean-up); return what was removed.

    Call it only where no other process is writing into `folder` at the same time.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success rename it to `path`.

    Used for multi-file artefacts (an encoder folder): readers never see a partial one.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
