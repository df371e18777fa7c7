"""The last-known-good copy of a client's cache on disk, for a cold start with no registry.

The file is JSON: ``{"format": 1, "saved_at": <unix time>, "topics": {topic: [host, ...]}}``.
It is written atomically (a temporary file in the same directory, flushed and fsynced, then
renamed over the old one), so a crash mid-write leaves the previous copy intact. Reading is
lenient: a missing, unreadable or malformed file is logged and treated as empty, because a
cold start must not fail on a cache.
"""

import json
import logging
import math
import os
import tempfile
import time

from rpcmm.addressing import is_clean_text

__all__ = ["save_cache", "load_cache", "MAX_CACHE_FILE_BYTES"]

LOG = logging.getLogger(__name__)
_FORMAT = 1
#: The largest cache file read at start: about 300,000 topics of 10 hosts with long names, far
#: beyond any cache's max_entries; a larger file is not the process's own (or is damaged).
MAX_CACHE_FILE_BYTES = 256 << 20


def save_cache(path, answers, wall_clock=time.time):
    """Write ``answers`` (topic -> list of hosts) to ``path`` atomically."""
    document = {"format": _FORMAT, "saved_at": wall_clock(), "topics": answers}
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".rpcmm-cache-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_cache(path, wall_clock=time.time):
    """``(answers, age_seconds)`` from ``path``; ``({}, None)`` if there is nothing usable (a
    file over :data:`MAX_CACHE_FILE_BYTES` is not read)."""
    try:
        with open(path) as f:
            if os.fstat(f.fileno()).st_size > MAX_CACHE_FILE_BYTES:
                LOG.warning("ignoring the cache file %s: larger than %d bytes", path, MAX_CACHE_FILE_BYTES)
                return {}, None
            document = json.load(f)
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        LOG.warning("ignoring the cache file %s: %s", path, exc)
        return {}, None
    except RecursionError:
        LOG.warning("ignoring the cache file %s: JSON nested too deep", path)
        return {}, None
    if not isinstance(document, dict) or document.get("format") != _FORMAT or not isinstance(
            document.get("topics"), dict):
        LOG.warning("ignoring the cache file %s: not an rpcmm cache (format %d)", path, _FORMAT)
        return {}, None
    answers = {}
    for topic, hosts in document["topics"].items():
        if _is_name(topic) and isinstance(hosts, list) and all(_is_name(h) for h in hosts):
            answers[topic] = tuple(hosts)
    saved_at = document.get("saved_at")
    fine = isinstance(saved_at, (int, float)) and not isinstance(saved_at, bool) and math.isfinite(saved_at)
    age = max(0.0, wall_clock() - saved_at) if fine else None  # None: of unknown age
    return answers, age


def _is_name(value):
    return isinstance(value, str) and 0 < len(value) <= 255 and is_clean_text(value)
