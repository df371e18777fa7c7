"""Fixtures for the oslo.messaging driver's tests: a registry, configurations, transports.

Every server binds 127.0.0.1 on a port the OS picks; every transport a test makes is cleaned
up when it ends (the root conftest then checks that no thread was left behind).
"""

import threading

import pytest
from oslo_config import cfg

import oslo_messaging
from oslo_messaging import opts as messaging_opts
from rpcmm.server import RegistryServer

#: Fast heartbeats so that expiry tests take a second, not ten.
FAST_TIMING = {"heartbeat_interval": 0.1, "heartbeat_ttl": 0.5}


def make_conf(**rpcmm_options):
    """A private ConfigOpts with oslo.messaging's options and the given ``[rpcmm]`` overrides.

    oslo.messaging 18.3.1 registers its tracing and metrics options on the global cfg.CONF
    only, although its clients read them from the conf they are given; they are registered
    here too so that a private ConfigOpts works.
    """
    from oslo_messaging._metrics import client as metrics
    from oslo_messaging._tracing import client as tracing

    from rpcmm.oslo.options import register_opts

    conf = cfg.ConfigOpts()
    for group, options in messaging_opts.list_opts():
        conf.register_opts(options, group=group)
    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    conf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    conf([], project="rpcmm-tests")
    register_opts(conf)
    for name, value in rpcmm_options.items():
        conf.set_override(name, value, group="rpcmm")
    return conf


@pytest.fixture
def registry():
    """A registry server on 127.0.0.1 and a port the OS picks."""
    server = RegistryServer("127.0.0.1:0", sweep_interval=0.05).start()
    yield server
    server.stop()


@pytest.fixture
def url(registry):
    return f"zmq://{registry.endpoint}/"


def stop_all(servers):
    """Stop oslo servers or listeners, then wait for all of them at once: oslo's executor takes
    about a second to wind down in ``wait()``, and these seconds then overlap."""
    for server in reversed(servers):
        server.stop()
    waiters = [threading.Thread(target=server.wait) for server in servers]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join(30)


class Transports:
    """Makes RPC and notification transports (and RPC servers) and cleans all of them up."""

    def __init__(self, url):
        self.url = url
        self._transports = []
        self._servers = []

    def rpc(self, url=None, **rpcmm_options):
        conf = make_conf(**{**FAST_TIMING, **rpcmm_options})
        transport = oslo_messaging.get_rpc_transport(conf, url=url or self.url)
        self._transports.append(transport)
        return transport

    def notification(self, url=None, **rpcmm_options):
        conf = make_conf(**{**FAST_TIMING, **rpcmm_options})
        transport = oslo_messaging.get_notification_transport(conf, url=url or self.url)
        self._transports.append(transport)
        return transport

    def server(self, target, endpoints, transport=None, executor="threading"):
        """A started RPC server on its own transport (or ``transport``)."""
        server = oslo_messaging.get_rpc_server(transport or self.rpc(), target, endpoints,
                                               executor=executor)
        server.start()
        self._servers.append(server)
        return server

    def stop_server(self, server):
        if server in self._servers:
            self._servers.remove(server)
            server.stop()
            server.wait()

    def close(self):
        stop_all(self._servers)
        for transport in reversed(self._transports):
            transport.cleanup()


@pytest.fixture
def transports(url):
    made = Transports(url)
    yield made
    made.close()


@pytest.fixture
def registered(registry, context):
    """``registered()``: the registry's table as {host: frozenset(topics)}, asked over zmq."""
    from rpcmm.client import RegistryClient

    client = RegistryClient([registry.endpoint], context, timeout=2.0).start()

    def table():
        answer, _ = client.list_hosts()
        rows = getattr(answer, "rows", answer)  # a Table reply, or its rows
        return {row.host: frozenset(row.topics) for row in rows}

    yield table
    client.close()
