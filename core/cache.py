"""
The cache of a hub without Redis (`make run`, SQLite installs): Django's FileBasedCache with its
read-modify-write operations made atomic across every process and thread of the machine.

FileBasedCache's `add` is has_key-then-set and `incr` is get-then-set, with nothing held between the two,
and Django documents the file cache as not atomic: concurrent requests lost rate-limit counts (1,273 of
1,400 answered under a limit of 1,200) and doorbells rang twice. No maintained package offers a locked file
cache, so this one is written here: each operation holds an flock(2) on one lock file beside the cache
folder. flock belongs to the open file description, and every call opens the file afresh, so it excludes
other threads of the same process as well as other processes. Redis, the production cache, needs none of
this: its SET NX and INCR are atomic.
"""

import fcntl
import os
import pickle  # noqa: RUF100, S403 - to read the expiry FileBasedCache pickles into its own files
import threading
import time
from contextlib import contextmanager

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache


class LockedFileBasedCache(FileBasedCache):
    """FileBasedCache whose writes hold an exclusive lock and whose reads a shared one."""

    def __init__(self, dir, params):
        super().__init__(dir, params)
        # Beside the folder rather than in it: the folder may be deleted and made again at any time.
        self._lock_path = f"{self._dir}.lock"
        # The lock this thread holds: an operation made of others (add: has_key, then set) takes it once.
        self._held = threading.local()

    @contextmanager
    def _lock(self, operation=fcntl.LOCK_EX):
        if getattr(self._held, "fd", None) is not None:  # already held by this thread (the outer call's mode)
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, operation)
            self._held.fd = fd
            yield
        finally:
            self._held.fd = None
            os.close(fd)  # releases the lock

    # Reads take the shared lock too: finding an entry expired, they delete its file, which must not be the
    # file a writer has just put in its place.
    def get(self, key, default=None, version=None):
        with self._lock(fcntl.LOCK_SH):
            return super().get(key, default, version)

    def has_key(self, key, version=None):
        with self._lock(fcntl.LOCK_SH):
            return super().has_key(key, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        with self._lock():
            return super().add(key, value, timeout, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        with self._lock():
            super().set(key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        with self._lock():
            return super().touch(key, timeout, version)

    def delete(self, key, version=None):
        with self._lock():
            return super().delete(key, version)

    def clear(self):
        with self._lock():
            super().clear()

    def incr(self, key, delta=1, version=None):
        """Atomic, and keeping the entry's expiry as Redis's INCR does (BaseCache.incr resets it to the default)."""
        with self._lock():
            value = super().get(key, self._missing_key, version)
            if value is self._missing_key:
                raise ValueError(f"Key '{key}' not found.")
            value += delta
            super().set(key, value, self._time_left(key, version), version)
            return value

    def _time_left(self, key, version) -> float | None:
        """Seconds until the entry expires (None: never), read from the expiry its file starts with."""
        with open(self._key_to_file(key, version), "rb") as f:
            expiry = pickle.load(f)  # noqa: S301 - the cache's own file, written by FileBasedCache in our folder
        return None if expiry is None else expiry - time.time()
