import json
import re

import pytest

from rpcmm import security
from rpcmm.errors import ConfigurationError
from rpcmm.policy import ALLOWED, TopicPolicy

COMPUTE = "rJ6e1.OY&XSKg*!9yC]mw(zPc8AWfBe0-%Y&<mRS"  # any 40 Z85 characters
OTHER = "0123456789abcdefghijABCDEFGHIJ.-:+=^!/*?"

DOCUMENT = {
    "keys": {
        COMPUTE: {"topics": ["compute", "compute.*"], "hosts": ["compute-*"]},
        OTHER: {"topics": ["scheduler"], "hosts": ["sched-?"]},
    },
    "default": {"topics": ["public.*"], "hosts": ["anon-*"]},
}


@pytest.fixture
def policy():
    return TopicPolicy.from_document(DOCUMENT)


def test_a_key_may_register_what_its_patterns_match_and_nothing_else(policy):
    assert policy.may_register(COMPUTE, "compute-7", "compute")
    assert policy.may_register(COMPUTE, "compute-7", "compute.fanout.x")  # * crosses dots
    assert not policy.may_register(COMPUTE, "compute-7", "scheduler")
    assert not policy.may_register(COMPUTE, "sched-1", "compute")
    assert not policy.may_register(COMPUTE, "Compute-7", "compute")  # case-sensitive
    assert policy.may_register(OTHER, "sched-1", "scheduler")
    assert not policy.may_register(OTHER, "sched-10", "scheduler")  # ? is one character


def test_unlisted_and_unauthenticated_peers_get_the_default(policy):
    assert policy.may_register("x" * 40, "anon-1", "public.news")
    assert policy.may_register(None, "anon-1", "public.news")
    assert not policy.may_register(None, "compute-1", "compute")


def test_without_a_default_strangers_may_do_nothing():
    policy = TopicPolicy.from_document({"keys": {COMPUTE: {"topics": ["*"], "hosts": ["*"]}}})
    assert policy.may_register(COMPUTE, "h", "t")
    assert not policy.may_register(None, "h", "t")
    assert not policy.may_unregister(OTHER, "h")


def test_unregistering_needs_the_host(policy):
    assert policy.may_unregister(COMPUTE, "compute-1")
    assert not policy.may_unregister(COMPUTE, "sched-1")


def test_heartbeat_verdicts_name_what_is_refused(policy):
    assert policy.check_heartbeat(COMPUTE, "compute-1", ("compute", "compute.a")) is ALLOWED
    verdict = policy.check_heartbeat(COMPUTE, "compute-1", ("compute", "scheduler", "x"))
    assert not verdict.allowed and not verdict.host_refused
    assert verdict.refused_topics == ("scheduler", "x")
    verdict = policy.check_heartbeat(COMPUTE, "sched-1", ("compute",))
    assert verdict.host_refused and verdict.refused_topics == ("compute",)
    # An empty topic set removes the host: it needs the host, and nothing else.
    assert policy.check_heartbeat(COMPUTE, "compute-1", ()) is ALLOWED
    assert policy.check_heartbeat(COMPUTE, "sched-1", ()).host_refused


def test_repeated_heartbeats_hit_the_cache_which_stays_bounded():
    policy = TopicPolicy.from_document(DOCUMENT, cache_size=3)
    first = policy.check_heartbeat(COMPUTE, "compute-1", ("compute",))
    assert policy.check_heartbeat(COMPUTE, "compute-1", ("compute",)) is first
    assert policy.cached_decisions == 1
    for i in range(100):
        policy.check_heartbeat(COMPUTE, f"compute-{i}", ("compute",))
    assert policy.cached_decisions == 3
    assert policy.check_heartbeat(COMPUTE, "compute-1", ("scheduler",)).refused_topics == ("scheduler",)


def test_the_cache_is_bounded_by_the_names_its_decisions_keep_alive():
    policy = TopicPolicy.from_document(DOCUMENT, cache_size=10)  # 120 names at most
    for i in range(50):
        policy.check_heartbeat(COMPUTE, f"compute-{i}", tuple(f"compute.{j}" for j in range(30)))
    assert policy.cached_decisions == 3  # 3 x 31 names fit in 120; a fourth would not
    many = tuple(f"compute.{j}" for j in range(65))
    policy.check_heartbeat(COMPUTE, "compute-x", many)  # over 64 topics: decided, never cached
    assert policy.cached_decisions == 3
    assert policy.check_heartbeat(COMPUTE, "compute-x", many) is ALLOWED


def test_only_keys_granted_something_may_report_hosts_unreachable(policy):
    assert policy.may_report(COMPUTE) and policy.may_report(None)  # None: the default grants anon-*
    strict = TopicPolicy.from_document({"keys": DOCUMENT["keys"]})  # no default: strangers get nothing
    assert strict.may_report(OTHER) and not strict.may_report(None)
    assert not strict.may_report("x" * 40)
    assert TopicPolicy.allow_all().may_report(None)


def test_the_cache_is_keyed_by_key_too(policy):
    assert policy.check_heartbeat(COMPUTE, "sched-1", ("scheduler",)).host_refused
    assert policy.check_heartbeat(OTHER, "sched-1", ("scheduler",)) is ALLOWED


def test_allow_all():
    policy = TopicPolicy.allow_all()
    assert policy.may_register(None, "any", "thing") and policy.may_unregister(None, "any")
    assert policy.check_heartbeat(None, "h", ("t",)) is ALLOWED
    assert policy.cached_decisions == 0


def test_load_from_a_file_with_key_names(tmp_path):
    public_path, _ = security.generate_keypair(tmp_path / "authorized", "compute")
    key = security.load_public_key(public_path).decode()
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"keys": {"compute": {"topics": ["compute"], "hosts": ["*"]}}}))
    policy = TopicPolicy.load(path, authorized_keys_dir=tmp_path / "authorized")
    assert policy.may_register(key, "h", "compute")
    assert not policy.may_register(COMPUTE, "h", "compute")
    # Without the directory, a name cannot be resolved.
    with pytest.raises(ConfigurationError, match="'compute' is not a 40-character Z85 public key"):
        TopicPolicy.load(path)


@pytest.mark.parametrize("document, message", [
    ([], "a policy is a JSON object"),
    ({"keys": [], "default": {}}, '"keys" must be an object'),
    ({"keys": {}, "rules": {}}, "unknown entries \\['rules'\\]"),
    ({"keys": {"short": {}}}, "'short' is not a 40-character Z85"),
    ({"keys": {COMPUTE: []}}, re.escape(f"keys.{COMPUTE} must be an object")),
    ({"keys": {COMPUTE: {"topics": "compute"}}}, "topics must be a list"),
    ({"keys": {COMPUTE: {"topics": ["a b"]}}}, "topics: pattern 'a b' contains white space"),
    ({"keys": {COMPUTE: {"topics": [""]}}}, "topics: pattern must not be empty"),
    ({"keys": {COMPUTE: {"topics": [7]}}}, "topics: pattern must be a string, not int"),
    ({"keys": {COMPUTE: {"hosts": ["*"], "topic": ["x"]}}}, "unknown entries \\['topic'\\]"),
    ({"default": {"hosts": ["x" * 300]}}, "default.hosts"),
    ({"keys": {COMPUTE: {"max_hosts": 0}}}, re.escape(f"keys.{COMPUTE}.max_hosts must be a whole number from 1")),
    ({"default": {"max_hosts": "10"}}, "default.max_hosts must be a whole number"),
    ({"default": {"max_hosts": 2.5}}, "default.max_hosts must be a whole number"),
    ({"default": {"max_hosts": True}}, "default.max_hosts must be a whole number"),
])
def test_invalid_documents_name_the_place_and_the_value(document, message):
    with pytest.raises(ConfigurationError, match=message):
        TopicPolicy.from_document(document, source="p.json")


def test_quotas_are_per_grant_and_optional(policy):
    assert not policy.has_quotas and policy.max_hosts(COMPUTE) is None
    quoted = TopicPolicy.from_document({
        "keys": {COMPUTE: {"topics": ["*"], "hosts": ["*"], "max_hosts": 50}, OTHER: {"hosts": ["*"]}},
        "default": {"max_hosts": 1},
    })
    assert quoted.has_quotas
    assert quoted.max_hosts(COMPUTE) == 50
    assert quoted.max_hosts(OTHER) is None
    assert quoted.max_hosts(None) == 1 and quoted.max_hosts("unknown key") == 1
    assert not TopicPolicy.allow_all().has_quotas and TopicPolicy.allow_all().max_hosts(None) is None


def test_unreadable_or_non_json_files(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read the policy file"):
        TopicPolicy.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigurationError, match=f"{bad}: not JSON"):
        TopicPolicy.load(bad)


def test_a_key_listed_twice_under_two_references_is_an_error(tmp_path):
    public_path, _ = security.generate_keypair(tmp_path, "k")
    key = security.load_public_key(public_path).decode()
    with pytest.raises(ConfigurationError, match="listed twice"):
        TopicPolicy.from_document({"keys": {key: {}, "k": {}}}, authorized_keys_dir=tmp_path)
