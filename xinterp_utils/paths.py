"""Where things live: the repository, the data, the cache, an encoder's folder name; safe
file writes; and content digests of files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
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


def encoder_slug(encoder: str) -> str:
    """Return the folder name that stands for `encoder` under `checkpoints/` and
    `results/sweeps/`: its name or path with `/` replaced by `--` (`owner--name`)."""
    return encoder.strip("/").replace("/", "--")


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


def file_sha256(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file's bytes (read in 8 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 23), b""):
            digest.update(chunk)
    return digest.hexdigest()


def combine_file_digests(digests: dict[str, str]) -> str:
    """Return one sha256 (hex) over {file name: file sha256}, independent of dict order."""
    digest = hashlib.sha256()
    for name in sorted(digests):
        digest.update(f"{name}\0{digests[name]}\n".encode())
    return digest.hexdigest()


def write_json(path: Path, obj) -> None:
    """Write `obj` to `path` as indented UTF-8 JSON (non-ASCII kept) with a final newline."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
