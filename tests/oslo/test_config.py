"""Options, URL forms, and what building a driver does (nothing)."""

import threading

import pytest
from oslo_config import cfg

import oslo_messaging
from rpcmm.addressing import Endpoint
from rpcmm.errors import ConfigurationError
from rpcmm.oslo import options
from rpcmm.oslo.discovery import plan_for
from rpcmm.oslo.driver import ZmqDriver
from rpcmm.testing import write_seed
from tests.oslo.conftest import make_conf

pytestmark = pytest.mark.timeout(20)


def test_options_go_on_the_given_conf_only():
    conf = cfg.ConfigOpts()
    ZmqDriver(conf, oslo_messaging.TransportURL.parse(conf, "zmq://"))
    assert conf.rpcmm.embedded_registry_port == options.DEFAULT_EMBEDDED_PORT
    assert "rpcmm" not in cfg.CONF


def test_list_opts_names_every_option():
    [(group, listed)] = options.list_opts()
    assert group == "rpcmm"
    assert {o.name for o in listed} == {o.name for o in options.OPTS}
    assert listed[0] is not options.OPTS[0]  # copies: the generator may not alter ours


def test_the_driver_is_found_through_its_entry_point():
    transport = oslo_messaging.get_rpc_transport(make_conf(), url="zmq://")
    try:
        assert type(transport._driver) is ZmqDriver
    finally:
        transport.cleanup()


def test_building_a_driver_starts_nothing():
    before = threading.active_count()
    conf = make_conf()
    driver = ZmqDriver(conf, oslo_messaging.TransportURL.parse(conf, "zmq://"))
    assert threading.active_count() == before
    driver.cleanup()  # never started: nothing to stop


def test_requeue_is_a_supported_feature():
    conf = make_conf()
    driver = ZmqDriver(conf, oslo_messaging.TransportURL.parse(conf, "zmq://"))
    driver.require_features(requeue=False)
    driver.require_features(requeue=True)


def _plan(url, **overrides):
    conf = make_conf(**overrides)
    return plan_for(oslo_messaging.TransportURL.parse(conf, url), conf.rpcmm)


def test_zmq_with_no_host_is_the_embedded_registry():
    plan = _plan("zmq://", embedded_registry_port=7799)
    assert plan.embedded == Endpoint("127.0.0.1", 7799)
    assert plan.seed.registries == (Endpoint("127.0.0.1", 7799),)


def test_url_hosts_are_the_registries():
    plan = _plan("zmq://10.0.0.1:7701,[fd00::3]:7702/")
    assert plan.embedded is None
    assert plan.seed.registries == (Endpoint("10.0.0.1", 7701), Endpoint("fd00::3", 7702))


def test_url_hosts_need_a_port():
    with pytest.raises(ConfigurationError, match=r"need a port: 127\.0\.0\.1 \(zmq://127\.0\.0\.1:7701/"):
        _plan("zmq://127.0.0.1/")


def test_a_seed_file_names_the_registries(tmp_path):
    seed = write_seed(tmp_path / "seed.json", registries=["10.0.0.9:7701"], ring={"sched": ["c1"]})
    plan = _plan("zmq://", seed_file=str(seed))
    assert plan.embedded is None
    assert plan.seed.registries == (Endpoint("10.0.0.9", 7701),)
    assert plan.seed.static_hosts("sched") == ("c1",)
    # URL hosts win over the file's registries; the file's ring still applies.
    plan = _plan("zmq://10.0.0.1:7701/", seed_file=str(seed))
    assert plan.seed.registries == (Endpoint("10.0.0.1", 7701),)
    assert plan.seed.static_hosts("sched") == ("c1",)


def test_a_ttl_not_above_the_interval_is_refused_when_starting():
    conf = make_conf(heartbeat_interval=1.0, heartbeat_ttl=1.0)
    driver = ZmqDriver(conf, oslo_messaging.TransportURL.parse(conf, "zmq://"))
    with pytest.raises(ConfigurationError):
        driver.send(oslo_messaging.Target(topic="t"), {}, {"method": "m"})
    driver.cleanup()


def test_a_wildcard_listen_host_needs_an_advertised_one():
    conf = make_conf(listen_host="0.0.0.0")
    driver = ZmqDriver(conf, oslo_messaging.TransportURL.parse(conf, "zmq://"))
    with pytest.raises(ConfigurationError, match="advertise_host"):
        driver.listen(oslo_messaging.Target(topic="t", server="s"), 1, None)
    driver.cleanup()
