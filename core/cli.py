"""Helpers shared by the absl front ends (detect.py, save_model.py, ...)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from core.errors import AlprError

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print one line to stderr and exit; never a traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def guarded(main: Callable[[Sequence[str]], object]) -> Callable[[Sequence[str]], object]:
    """Wrap an absl ``main`` so that AlprError / missing files become one-line errors (exit 2)."""

    def wrapper(argv: Sequence[str]) -> object:
        try:
            return main(argv)
        except AlprError as exc:
            fail(str(exc))
        except FileNotFoundError as exc:
            fail(f"file not found: {exc.filename or exc}")
        except KeyboardInterrupt:
            fail("interrupted", 130)
        return None

    return wrapper


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            # mkstemp creates 0600 files; give the result the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dest`` through a temporary file, so ``dest`` is never half-written."""
    with atomic_path(dest, suffix=Path(dest).suffix) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)
