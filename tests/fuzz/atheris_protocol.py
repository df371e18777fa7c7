"""Coverage-guided fuzzing of the registry's receive path: ``protocol.decode`` and the table.

Run by hand (libFuzzer options after the script)::

    python tests/fuzz/atheris_protocol.py -atheris_runs=200000
    python tests/fuzz/atheris_protocol.py -max_total_time=600 corpus_dir/

or bounded from pytest (``tests/fuzz/test_atheris.py``, which starts it from a corpus of valid
frames of every kind). The contract checked: ``decode`` of
any bytes returns a message or raises ProtocolError, nothing else; whatever decodes can be
applied to a :class:`~rpcmm.table.RegistryTable` the way the server does, after which the
table's topic index agrees with its hosts; and a decoded message re-encodes to a frame that
decodes to the same message.
"""

import sys

import atheris

with atheris.instrument_imports(include=["rpcmm"]):
    from rpcmm import protocol
    from rpcmm.errors import ProtocolError
    from rpcmm.table import RegistryTable
    from rpcmm.timing import TimingBounds

_TABLE = RegistryTable(TimingBounds())
_STATE = {"now": 0.0, "inputs": 0}


def _check_index(table):
    """Every (topic, host) in the index is a live registration, and the other way round."""
    registered = {(t, h) for h, e in table._hosts.items() for t in e.topics}
    indexed = {(t, h) for t, hosts in table._by_topic.items() for h in hosts}
    if registered != indexed:
        raise AssertionError(f"table index diverged: {registered ^ indexed}")


def test_one_input(data):
    _STATE["inputs"] += 1
    if not data:
        return
    try:
        message = protocol.decode(data)
    except ProtocolError:
        return
    assert protocol.decode(protocol.encode(message)) == message
    table = _TABLE
    now = _STATE["now"] = _STATE["now"] + (data[0] / 16.0)
    kind = type(message)
    if kind is protocol.Heartbeat:
        for state in message.states:
            table.heartbeat(state.host, state.topics, state.interval, state.ttl, now)
    elif kind is protocol.Unregister:
        for host in message.hosts:
            table.remove(host)
    elif kind is protocol.Lookup:
        table.hosts_for(message.topic)
    elif kind is protocol.ListHosts:
        protocol.encode(protocol.Table(message.request_id, table.rows(now)))
    table.expire(now)
    _check_index(table)
    if len(table) > 10_000:  # keep the fuzzer's own memory bounded
        _TABLE.expire(float("inf"))


def main(argv):
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
