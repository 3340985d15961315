"""JAX's persistent compilation cache for lucidax: compiled programs are kept on disk, so a
fresh process (a second ``lucidax`` command, a resumed gallery, a re-run job) loads them
instead of compiling them again.

Where the cache lives (first match wins):

1. the ``path`` given to :func:`enable_compile_cache` (the CLI's ``lucidax --compile-cache
   DIR``);
2. the environment variable ``LUCIDAX_COMPILE_CACHE``: a folder, or ``0`` / ``off`` /
   ``none`` / ``false`` / ``no`` / empty to turn the cache off;
3. the user's cache folder: ``$XDG_CACHE_HOME/lucidax/jax-compile`` (else
   ``~/.cache/lucidax/jax-compile``) on Linux, ``~/Library/Caches/lucidax/jax-compile`` on
   macOS, ``%LOCALAPPDATA%\\lucidax\\jax-compile`` on Windows.

Policy (who turns it on):

* the ``lucidax`` command: on by default, before any subcommand runs (``--compile-cache DIR``
  moves it, ``--no-compile-cache`` turns it off for the process);
* the long library jobs, the functions the CLI commands call (``run_probe``, ``run_tcav``,
  ``run_dissect``, ``run_concepts``, ``run_attribute``, ``run_invert``, ``render_job``,
  :func:`lucidax.gallery.build_gallery`): on by default too, through :func:`enable_for_job`,
  because they are the CLI's jobs called from Python and pay the same cold starts. Writing
  to the user's cache folder without being asked could surprise a library user, so a job
  never overrides a choice already made: ``LUCIDAX_COMPILE_CACHE=0`` turns it off, a cache
  folder the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)``) is kept as it is, and
  :func:`disable_compile_cache` (or the CLI's ``--no-compile-cache``) keeps later jobs from
  turning it on;
* everything else (``render``, ``fit_probe``, ``tcav``, ...): untouched; call
  :func:`enable_compile_cache` yourself.

Turning it on is process-wide (JAX has one cache): the thresholds are set so that every
program is cached, small CPU ones included (``jax_persistent_cache_min_compile_time_secs``
= 0, ``jax_persistent_cache_min_entry_size_bytes`` = -1). The folder is not bounded
(JAX's default, ``jax_compilation_cache_max_size`` = -1): JAX's LRU eviction re-reads the
access time of every entry on each write, which cost minutes over the test suite's ~3,000
programs (a cold fresh-clone CI: pytest 10 min 19 s with eviction at 2 GiB), and one entry
left without its access-time file by a killed process made every later write fail with a
warning. Programs are small (the whole test suite's: ~45 MB); delete the folder to reclaim
the space. A bound set through ``jax.config`` is kept. It never fails a
run: a folder that cannot be created or written gives one :class:`CompileCacheWarning` and
the run goes on uncached. The cache removes XLA compilation, not tracing or lowering.

Only use a cache folder nobody else can write to: JAX trusts what it loads from it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "ENV",
    "CompileCacheWarning",
    "compile_cache_info",
    "configure_compile_cache",
    "default_compile_cache_dir",
    "disable_compile_cache",
    "enable_compile_cache",
    "enable_for_job",
]

#: Environment variable: a cache folder, or one of :data:`OFF_VALUES` to turn the cache off.
ENV = "LUCIDAX_COMPILE_CACHE"
#: Values of :data:`ENV` (case-insensitive, stripped) that turn the cache off.
OFF_VALUES = frozenset({"", "0", "off", "none", "false", "no"})

_lock = threading.Lock()
# path: the folder JAX caches in (None: off); source: who decided ('argument', 'env',
# 'default', 'jax' (set outside lucidax), 'disabled', 'env-disabled', 'unwritable');
# decided: whether the process-wide choice is made (enable_for_job then does nothing).
_state: dict[str, Any] = {"path": None, "source": None, "decided": False}
_warned: set[str] = set()


class CompileCacheWarning(UserWarning):
    """The compilation cache folder could not be used; the run goes on uncached."""


def default_compile_cache_dir() -> Path:
    """The user's cache folder for lucidax's compiled programs (see the module docstring)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lucidax" / "jax-compile"


def _env_choice() -> tuple[str | None, str] | None:
    """``(folder or None for off, source)`` from :data:`ENV`, or None when it is not set."""
    value = os.environ.get(ENV)
    if value is None:
        return None
    if value.strip().lower() in OFF_VALUES:
        return None, "env-disabled"
    return value, "env"


def _writable(folder: Path) -> str | None:
    """None when ``folder`` can be created and written to, else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as e:
        return f"{e.strerror or e}"
    return None


def _jax_dir() -> str | None:
    import jax

    return jax.config.jax_compilation_cache_dir


def _apply(folder: str | None) -> None:
    """Point JAX's cache at ``folder`` (None: off) with lucidax's thresholds."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    if folder is not None and folder == _jax_dir():
        return  # already there: keep the initialized cache
    cc.reset_cache()  # a folder set after the cache was initialized takes effect only so
    jax.config.update("jax_compilation_cache_dir", folder)
    if folder is None:
        return
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def enable_compile_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turn JAX's persistent compilation cache on for this process; returns its folder, or
    None when it stays off.

    ``path``: the folder; None: :data:`ENV` if set (an off value keeps it off), else
    :func:`default_compile_cache_dir`. The folder is created. Calling it again with the same
    folder does nothing; with another one, moves the cache. Never raises for the folder: one
    that cannot be created or written warns once (:class:`CompileCacheWarning`) and the
    cache stays off."""
    if path is not None:
        folder, source = os.fspath(path), "argument"
    else:
        folder, source = _env_choice() or (str(default_compile_cache_dir()), "default")
    with _lock:
        if folder is None:
            _apply(None)
            _state.update(path=None, source=source, decided=True)
            return None
        folder = str(Path(folder).expanduser().absolute())
        if _state["path"] == folder and _jax_dir() == folder:
            return folder
        why = _writable(Path(folder))
        if why is not None:
            if folder not in _warned:
                _warned.add(folder)
                warnings.warn(f"compilation cache folder {folder!r} cannot be used ({why}); "
                              "running without the compilation cache", CompileCacheWarning,
                              stacklevel=2)
            _apply(None)
            _state.update(path=None, source="unwritable", decided=True)
            return None
        _apply(folder)
        _state.update(path=folder, source=source, decided=True)
        return folder


def disable_compile_cache() -> None:
    """Turn the cache off for this process; later jobs (:func:`enable_for_job`) keep it off."""
    with _lock:
        _apply(None)
        _state.update(path=None, source="disabled", decided=True)


def enable_for_job() -> str | None:
    """The library jobs' policy (module docstring): turn the cache on unless a choice is
    already made (by :func:`enable_compile_cache`, :func:`disable_compile_cache`, the CLI,
    :data:`ENV` set to an off value, or a JAX cache folder set outside lucidax). Returns the
    folder in use, or None."""
    if _state["decided"]:
        return _state["path"]
    env = _env_choice()
    if env is not None and env[0] is None:
        with _lock:
            _state.update(path=None, source=env[1], decided=True)
        return None
    if env is None:
        outside = _jax_dir()
        if outside and outside != _state["path"]:
            with _lock:
                _state.update(path=outside, source="jax", decided=True)
            return outside
    return enable_compile_cache()


def configure_compile_cache(choice: str | os.PathLike | bool | None = None) -> str | None:
    """The CLI's choice: a folder (``--compile-cache DIR``), False (``--no-compile-cache``)
    or None (the default: as :func:`enable_for_job`). Returns the folder in use, or None."""
    if choice is False:
        disable_compile_cache()
        return None
    if choice is None or choice is True:
        with _lock:
            _state["decided"] = False  # each command decides afresh (main() may run again)
        return enable_for_job()
    return enable_compile_cache(choice)


def compile_cache_info() -> dict[str, Any]:
    """``{"enabled", "path", "source", "default"}``: whether JAX's persistent cache is on in
    this process, its folder, who chose it ('argument', 'env', 'default', 'jax', 'disabled',
    'env-disabled', 'unwritable', or None: nothing decided yet) and the default folder."""
    folder = _jax_dir()
    source = _state["source"]
    if folder and folder != _state["path"]:
        source = "jax"
    return {"enabled": bool(folder), "path": folder, "source": source,
            "default": str(default_compile_cache_dir())}
