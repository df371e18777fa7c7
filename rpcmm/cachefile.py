"""The last-known-good copy of a client's cache on disk, for a cold start with no registry.

The file is JSON: ``{"format": 1, "saved_at": <unix time>, "topics": {topic: [host, ...]}}``.
It is written atomically (a temporary file in the same directory, flushed and fsynced, then
renamed over the old one), so a crash mid-write leaves the previous copy intact. Reading is
lenient: a missing, unreadable or malformed file is logged and treated as empty, because a
cold start must not fail on a cache.
"""

import json
import logging
import os
import tempfile
import time

from rpcmm.addressing import is_clean_text

__all__ = ["save_cache", "load_cache"]

LOG = logging.getLogger(__name__)
_FORMAT = 1


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
    """``(answers, age_seconds)`` from ``path``; ``({}, None)`` if there is nothing usable."""
    try:
        with open(path) as f:
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
    age = max(0.0, wall_clock() - saved_at) if isinstance(saved_at, (int, float)) else None
    return answers, age


def _is_name(value):
    return isinstance(value, str) and 0 < len(value) <= 255 and is_clean_text(value)
