"""Atomic file writes for every output of the project: a temporary file in the target's folder, renamed into
place with ``os.replace`` once complete, so a failed or interrupted run never leaves a half-written file."""
import contextlib
import json
import os
import tempfile

__all__ = ["atomic_open", "write_atomic", "write_lines_atomic", "write_json_atomic"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Open a temporary file beside ``path`` (text: UTF-8, ``\\n`` newlines); rename it to ``path`` on success,
    remove it on any error. Creates the parent folder."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # what open() would give the file (mkstemp makes it private)
        with os.fdopen(fd, mode, **text) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path, text):
    with atomic_open(path) as f:
        f.write(text)


def write_lines_atomic(path, lines):
    """One line per item, each ended by a newline; ``lines`` may be a generator (streamed, not held)."""
    with atomic_open(path) as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def write_json_atomic(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
