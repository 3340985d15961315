"""Where a job's output goes: a local folder, or any fsspec URL (private).

Every command's ``--out`` is either

* a plain path: the job writes there directly, exactly as before (atomic writes with
  ``os.replace``, see :func:`lucidax._files.atomic_write`); or
* an fsspec URL (``gs://``, ``s3://``, ``memory://``, ``file://``, ...): the job writes, as
  it would to a local folder, into a **staging folder** (``$LUCIDAX_STAGING``, default
  ``~/.cache/lucidax/staging``, one sub-folder per URL and process, emptied when a run
  starts and removed when it ends), and :class:`Storage` **publishes** the files to the URL.

Guarantees of a URL root, the same as a local folder's:

* atomic publish: a key at the URL is either absent or complete. Object stores whose upload
  is itself atomic (an object appears only when its upload completes: ``s3``, ``gs``/``gcs``,
  ``az``/``abfs``/``adl``, and ``memory``, whose file is stored on close) get one ``put``;
  every other filesystem (``file``, ``sftp``, ``hdfs``, ...) gets a put to
  ``<dir>/.<name>.<tag>.<random>.tmp`` and an ``fs.mv`` onto the name (a rename there);
* resume: :meth:`Storage.listing` lists the root once (one request, not one per file);
  :meth:`Storage.pull` fetches what a job reads back (its manifest, state files);
* no key outside the root: every key is a relative ``a/b/c`` of plain names
  (:func:`check_key` refuses ``..``, ``.``, absolute keys, backslashes and NUL).

``file://`` URLs go through the staging folder too: that is how a folder shared by several
machines (an NFS mount) is written safely, and how the URL code path is tested with no cloud.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Storage", "UnsafeKeyError", "check_key", "check_out", "is_url", "open_storage",
           "staged"]

#: Protocols whose single upload is atomic (see the module docstring).
ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"})
#: Words for the ``--out`` help of every command.
OUT_HELP = "a folder, or an fsspec URL (gs://..., s3://..., file://...)"


class UnsafeKeyError(ValueError):
    """A key that is not a plain relative path inside the output root."""


def is_url(out: Any) -> bool:
    """True for ``protocol://...`` strings (fsspec URLs), False for plain paths."""
    if not isinstance(out, str) or "://" not in out:
        return False
    scheme = out.split("://", 1)[0]
    return scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


def check_key(key: str) -> str:
    """``key`` when it is a relative ``a/b/c`` path of plain names, else UnsafeKeyError."""
    if (not isinstance(key, str) or not key or key.startswith("/") or "\\" in key
            or "\x00" in key or any(p in ("", ".", "..") for p in key.split("/"))):
        raise UnsafeKeyError(f"refusing key {key!r}: output keys must be plain relative names "
                             "inside the output root")
    return key


def _staging_root() -> Path:
    env = os.environ.get("LUCIDAX_STAGING")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lucidax" / "staging"


def _filesystem(url: str, flag: str = "--out"):
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:  # unknown protocol, backend not installed
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{flag} {url!r}: cannot open this URL ({why})") from None
    root = root.rstrip("/")
    if not root.strip("/") and fs.protocol not in ("memory",):
        raise ValueError(f"{flag} {url!r}: give a folder inside the bucket or filesystem root")
    return fs, root


def check_out(out: Any, *, flag: str = "--out") -> str:
    """Before any work: a local ``out`` as :func:`lucidax._files.prepare_out_dir` checks it;
    a URL must name a protocol whose fsspec backend is installed. One-line ValueError."""
    if is_url(out):
        _filesystem(out, flag)
        return out
    from ._files import prepare_out_dir

    return prepare_out_dir(out, flag=flag)


class Storage:
    """One job's output root: a local folder (``local``) and, for a URL, the fsspec
    filesystem it is published to. For a local ``out`` every method that talks to the URL
    does nothing, so callers need no branches."""

    def __init__(self, out: str, local: Path, fs: Any = None, root: str | None = None,
                 tag: str = "p0"):
        self.out, self.local, self.fs, self.root, self.tag = out, local, fs, root, tag
        self._synced: dict[str, tuple[int, int]] = {}  # key -> (size, mtime_ns) at last sync

    @property
    def remote(self) -> bool:
        return self.fs is not None

    @property
    def protocol(self) -> str:
        p = self.fs.protocol if self.remote else "local"
        return p[0] if isinstance(p, (tuple, list)) else p

    def url_of(self, key: str) -> str:
        """Where ``key`` is for the user: a local path, or ``<url>/<key>``."""
        if not self.remote:
            return str(self.local / check_key(key))
        return self.out.rstrip("/") + "/" + check_key(key)

    def _rpath(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    # ---- reading the URL
    def listing(self) -> dict[str, int]:
        """``{key: size}`` of every file under the root (one listing request); empty for a
        local root (a local job looks at its files directly)."""
        if not self.remote:
            return {}
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        prefix = self.root.rstrip("/") + "/"
        for path, info in found.items():
            if not path.startswith(prefix) or info.get("type", "file") != "file":
                continue
            key = path[len(prefix):]
            with contextlib.suppress(UnsafeKeyError):
                out[check_key(key)] = int(info.get("size") or 0)
        return out

    def pull(self, keys: Iterable[str]) -> list[str]:
        """Copy ``keys`` from the URL into the local folder (those that exist); returns the
        keys copied."""
        if not self.remote:
            return []
        got = []
        for key in dict.fromkeys(keys):
            dst = self.local / check_key(key)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.{self.tag}.pull.tmp")
            try:
                self.fs.get_file(self._rpath(key), str(tmp))
            except FileNotFoundError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                continue
            os.replace(tmp, dst)
            self._mark(key)
            got.append(key)
        return got

    # ---- writing the URL
    def _mark(self, key: str) -> None:
        st = (self.local / key).stat()
        self._synced[key] = (st.st_size, st.st_mtime_ns)

    def _changed(self, key: str) -> bool:
        try:
            st = (self.local / key).stat()
        except OSError:
            return False
        return self._synced.get(key) != (st.st_size, st.st_mtime_ns)

    def publish(self, keys: Iterable[str], *, only_changed: bool = True) -> list[str]:
        """Upload local ``keys`` to the URL atomically (see the module docstring), in order;
        with ``only_changed`` a key unchanged since its last pull/publish is skipped.
        Returns the keys uploaded."""
        if not self.remote:
            return []
        sent = []
        for key in keys:
            src = self.local / check_key(key)
            if not src.is_file() or (only_changed and not self._changed(key)):
                continue
            rpath = self._rpath(key)
            if self.protocol in ATOMIC_PUT:
                self.fs.put_file(str(src), rpath)
            else:
                parent, name = rpath.rsplit("/", 1)
                self.fs.makedirs(parent, exist_ok=True)
                tmp = f"{parent}/.{name}.{self.tag}.{secrets.token_hex(6)}.tmp"
                self.fs.put_file(str(src), tmp)
                try:
                    self.fs.mv(tmp, rpath)
                except BaseException:
                    with contextlib.suppress(Exception):
                        self.fs.rm_file(tmp)
                    raise
            self._mark(key)
            sent.append(key)
        return sent

    def local_keys(self) -> list[str]:
        """Every file of the local folder as a key (temp files left out)."""
        keys = []
        for p in sorted(self.local.rglob("*")):
            if p.is_file() and not p.is_symlink() and not p.name.endswith(".tmp"):
                keys.append(p.relative_to(self.local).as_posix())
        return keys

    def publish_changed(self, *, last: Iterable[str] = ()) -> list[str]:
        """Publish every local file new or changed since its last pull/publish; the keys in
        ``last`` (say ``index.html``) after all the others."""
        last = [k for k in last]
        keys = [k for k in self.local_keys() if k not in last]
        return self.publish(keys + last)

    def remove(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` at the URL (missing ones are fine)."""
        if not self.remote:
            return
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._rpath(key))

    def clean_tmp(self, listing: Mapping[str, int]) -> None:
        """Delete at the URL the temp files a killed publish of this process (tag) left."""
        mark = f".{self.tag}."
        self.remove([k for k in listing
                     if k.rsplit("/", 1)[-1].startswith(".") and k.endswith(".tmp")
                     and mark in k.rsplit("/", 1)[-1]])

    def close(self) -> None:
        """Remove the staging folder (a URL root; a local root is the output itself)."""
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)


def open_storage(out: str | os.PathLike, *, tag: str = "p0", flag: str = "--out") -> Storage:
    """The :class:`Storage` of ``out``. For a URL the staging folder (one per URL and
    ``tag``: a process of a job) is made empty: the URL, not a local copy, is the state."""
    if not is_url(out):
        return Storage(os.fspath(out), Path(out))
    fs, root = _filesystem(out, flag)
    digest = hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:16]
    local = _staging_root() / f"{digest}-{tag}"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    return Storage(out, local, fs, root, tag=tag)


def _to_urls(obj: Any, local: str, url: str) -> Any:
    """``obj`` with every string under the staging folder ``local`` turned into ``url``'s."""
    if isinstance(obj, str):
        if obj == local:
            return url
        return url.rstrip("/") + "/" + obj[len(local) + 1:] if obj.startswith(local + os.sep) \
            else obj
    if isinstance(obj, os.PathLike):
        s = os.fspath(obj)
        return _to_urls(s, local, url) if s.startswith(local) else obj
    if isinstance(obj, dict):
        return {k: _to_urls(v, local, url) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_to_urls(v, local, url) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            if not f.init:
                continue
            v = getattr(obj, f.name)
            if isinstance(v, (str, dict, list, tuple, os.PathLike)):
                new = _to_urls(v, local, url)
                if new is not v and new != v:
                    changes[f.name] = new
        return dataclasses.replace(obj, **changes) if changes else obj
    return obj


def staged(fn: Callable) -> Callable:
    """Decorator for ``run_<command>(job, ...)``: when ``job.out`` is a URL, the job runs into
    a staging folder that first receives what is already at the URL (so a resumable job
    resumes), and every file it wrote is published when it returns (``index.html`` last);
    paths in the result name the URL. A local ``job.out`` runs as before."""

    @functools.wraps(fn)
    def run(job: Any, *args: Any, **kwargs: Any) -> Any:
        out = getattr(job, "out", None)
        if not is_url(out):
            return fn(job, *args, **kwargs)
        storage = open_storage(out, tag=f"o{os.getpid()}")
        storage.pull(storage.listing())
        result = fn(dataclasses.replace(job, out=str(storage.local)), *args, **kwargs)
        storage.publish_changed(last=("index.html",))
        storage.close()
        return _to_urls(result, str(storage.local), out)

    return run
