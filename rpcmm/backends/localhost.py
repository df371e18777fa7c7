"""The localhost backend: every topic is served by this one host.

For a single machine and for tests, like the OpenStack localhost matchmaker: every lookup
answers with the one local host name, whatever was registered.
"""

from rpcmm.addressing import validate_name
from rpcmm.matchmaker import Capability, Matchmaker

__all__ = ["LocalhostMatchmaker"]


class LocalhostMatchmaker(Matchmaker):
    """Resolve every topic to ``host`` (default ``"localhost"``)."""

    capabilities = frozenset({Capability.EVERYTHING_LOCAL})

    def __init__(self, host="localhost", **kwargs):
        super().__init__(**kwargs)
        self._answer = (validate_name("host", host),)

    def _resolve(self, topic):
        return self._answer
