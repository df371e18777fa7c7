"""The outbox: a peer it cannot connect to is a delivery failure for that peer, nothing more."""

import pytest

from rpcmm.oslo import wire
from rpcmm.oslo.peers import Outbox, PeerBusy, PeerUnreachable
from rpcmm.runtime import THREADING


@pytest.mark.parametrize("address", ["host1", "compute-1.example.org", "h:notaport"])
def test_an_address_without_a_port_is_unreachable_not_a_crash(context, address):
    outbox = Outbox(context, THREADING, max_peers=4)
    try:
        with pytest.raises(PeerUnreachable, match=repr(address)):
            outbox.send(address, wire.encode(wire.Beat("id1")))
        assert issubclass(PeerUnreachable, PeerBusy) and len(outbox) == 0
    finally:
        outbox.close()
