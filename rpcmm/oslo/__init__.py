"""The oslo.messaging driver: ``transport_url = zmq://...``, peers found through rpcmm.

Modules, one concept each:

- :mod:`rpcmm.oslo.driver`: the driver oslo.messaging loads (entry point ``zmq``);
- :mod:`rpcmm.oslo.options`: the ``[rpcmm]`` options and ``list_opts``;
- :mod:`rpcmm.oslo.discovery`: which registries a transport URL means;
- :mod:`rpcmm.oslo.names`: oslo addresses as rpcmm topic and host names;
- :mod:`rpcmm.oslo.wire`: the message envelope;
- :mod:`rpcmm.oslo.receiver`: a bound socket and the task that reads it;
- :mod:`rpcmm.oslo.peers`: outgoing connections;
- :mod:`rpcmm.oslo.calls`: the caller's side of a call (reply socket, waiting calls);
- :mod:`rpcmm.oslo.listener`: the server's side (listener, incoming messages).

Importing this package registers nothing and starts nothing.
"""
