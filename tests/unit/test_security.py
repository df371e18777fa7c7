"""Key files, socket options and the ZAP decisions of rpcmm.security (ZAP driven over inproc)."""

import logging
import os
import stat

import pytest
import zmq
from zmq.utils import z85

from rpcmm import security
from rpcmm.errors import ConfigurationError, LifecycleError


@pytest.fixture
def keys(tmp_path):
    """A server pair, two client pairs (one authorized), each in its own directory."""
    server_pub, server_sec = security.generate_keypair(tmp_path / "server", "registry")
    good_pub, good_sec = security.generate_keypair(tmp_path / "authorized", "good")
    bad_pub, bad_sec = security.generate_keypair(tmp_path / "stranger", "bad")
    # Secret files never live in the authorized directory in a real deployment; move it out.
    os.rename(good_sec, tmp_path / "good.key_secret")
    return {
        "dir": tmp_path, "server_pub": server_pub, "server_sec": server_sec,
        "good_pub": good_pub, "good_sec": str(tmp_path / "good.key_secret"),
        "bad_pub": bad_pub, "bad_sec": bad_sec, "authorized": str(tmp_path / "authorized"),
    }


# -- key files ----------------------------------------------------------------------------------


def test_generate_writes_certificates_with_private_modes(tmp_path):
    public_path, secret_path = security.generate_keypair(tmp_path / "new" / "keys", "node1")
    assert public_path.endswith("node1.key") and secret_path.endswith("node1.key_secret")
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "keys").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(secret_path).st_mode) == 0o600
    public, secret = security.load_secret_keypair(secret_path)
    assert security.load_public_key(public_path) == public
    assert zmq.curve_public(secret) == public and len(public) == 40


def test_generate_refuses_to_overwrite_and_leaves_the_old_key(tmp_path):
    _, secret_path = security.generate_keypair(tmp_path, "n")
    before = open(secret_path).read()
    with pytest.raises(ConfigurationError, match="already exists"):
        security.generate_keypair(tmp_path, "n")
    assert open(secret_path).read() == before


def test_generate_does_not_leave_a_half_pair_when_the_public_file_exists(tmp_path):
    (tmp_path / "n.key").write_text("someone else's\n")
    with pytest.raises(ConfigurationError, match="n.key: already exists"):
        security.generate_keypair(tmp_path, "n")
    assert not (tmp_path / "n.key_secret").exists()
    assert (tmp_path / "n.key").read_text() == "someone else's\n"


@pytest.mark.parametrize("name", ["", "a/b", "..", ".", "a b", "key\n"])
def test_generate_refuses_names_that_are_not_plain_names(tmp_path, name):
    with pytest.raises(ConfigurationError, match="use letters, digits"):
        security.generate_keypair(tmp_path, name)


def test_generate_into_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="not a directory"):
        security.generate_keypair(tmp_path / "file", "k")


def test_secret_keys_in_the_authorized_directory_are_ignored_with_a_warning(tmp_path, caplog):
    security.generate_keypair(tmp_path, "client")
    keys = security.load_authorized_keys(tmp_path)
    assert keys == {security.load_public_key(tmp_path / "client.key")}
    assert "holds secret keys (client.key_secret)" in caplog.text


def test_keys_generate_command_prints_both_paths_and_the_public_key(tmp_path):
    line = security.keys_generate_command(str(tmp_path), "ops")
    public = security.load_public_key(tmp_path / "ops.key").decode()
    assert str(tmp_path / "ops.key") in line and str(tmp_path / "ops.key_secret") in line
    assert line.endswith(public)


def test_loading_failures_name_the_file_and_the_reason(tmp_path, keys):
    missing = tmp_path / "missing.key"
    with pytest.raises(ConfigurationError, match=f"{missing}: no such file"):
        security.load_public_key(missing)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        security.load_public_key(tmp_path)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello\n")
    with pytest.raises(ConfigurationError, match=f"{garbage}: not a ZeroMQ certificate"):
        security.load_public_key(garbage)
    short = tmp_path / "short.key"
    short.write_text('curve\n    public-key = "abc"\n')
    with pytest.raises(ConfigurationError, match="3 characters, a Z85 key has 40"):
        security.load_public_key(short)
    with pytest.raises(ConfigurationError, match="holds a secret-key"):
        security.load_public_key(keys["server_sec"])
    with pytest.raises(ConfigurationError, match="has no secret-key"):
        security.load_secret_keypair(keys["server_pub"])


def test_a_secret_file_whose_halves_do_not_match_is_refused(tmp_path, keys):
    public, _ = security.load_secret_keypair(keys["server_sec"])
    _, other_secret = security.load_secret_keypair(keys["bad_sec"])
    forged = tmp_path / "forged.key_secret"
    forged.write_text(f'curve\n    public-key = "{public.decode()}"\n    secret-key = "{other_secret.decode()}"\n')
    with pytest.raises(ConfigurationError, match="does not belong"):
        security.load_secret_keypair(forged)


def test_authorized_keys_are_every_public_key_in_the_directory(tmp_path, keys):
    (tmp_path / "authorized" / "README").write_text("not a key\n")
    assert security.load_authorized_keys(keys["authorized"]) == {security.load_public_key(keys["good_pub"])}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match="no \\*.key public key files"):
        security.load_authorized_keys(empty)
    with pytest.raises(ConfigurationError, match="no such directory"):
        security.load_authorized_keys(tmp_path / "nowhere")
    # A secret certificate disguised as a public one is refused, not silently trusted.
    os.link(keys["server_sec"], tmp_path / "authorized" / "oops.key")
    with pytest.raises(ConfigurationError, match="oops.key: holds a secret-key"):
        security.load_authorized_keys(keys["authorized"])


def test_configs_load_into_bytes(keys):
    server = security.CurveServerConfig(keys["server_sec"], keys["authorized"]).load()
    client = security.CurveClientConfig(keys["good_sec"], keys["server_pub"]).load()
    assert client.server_key == server.public_key
    assert client.public_key in server.authorized_keys
    with pytest.raises(ConfigurationError):
        security.CurveClientConfig(keys["good_sec"], keys["server_sec"]).load()


# -- sockets ------------------------------------------------------------------------------------


def test_socket_options_are_set(context, keys):
    server = security.CurveServerConfig(keys["server_sec"], keys["authorized"]).load()
    client = security.CurveClientConfig(keys["good_sec"], keys["server_pub"]).load()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    try:
        security.secure_server_socket(router, server)
        security.secure_client_socket(dealer, client)
        assert router.getsockopt(zmq.CURVE_SERVER) == 1
        assert router.getsockopt(zmq.MECHANISM) == zmq.CURVE
        assert router.getsockopt_string(zmq.ZAP_DOMAIN) == "rpcmm"
        assert router.getsockopt(zmq.ZAP_ENFORCE_DOMAIN) == 1
        assert dealer.getsockopt(zmq.CURVE_SERVER) == 0
        assert dealer.getsockopt(zmq.MECHANISM) == zmq.CURVE
    finally:
        router.close()
        dealer.close()


def test_peer_key_is_none_without_authentication(context):
    assert security.peer_key(zmq.Frame(b"x")) is None
    assert security.peer_key(b"bytes are not frames") is None


# -- the ZAP handler, driven with hand-made ZAP requests ------------------------------------------


@pytest.fixture
def zap(context, keys):
    """A running authenticator and a REQ to send it ZAP requests; both closed at the end."""
    authorized = security.load_authorized_keys(keys["authorized"])
    auth = security.CurveAuthenticator(context, authorized).start()
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.connect(security.ZAP_ENDPOINT)

    def ask(domain, mechanism, *credentials, address=b"192.0.2.7"):
        req.send_multipart([b"1.0", b"42", domain, address, b"", mechanism, *credentials])
        version, request_id, status, text, user_id, metadata = req.recv_multipart()
        assert (version, request_id) == (b"1.0", b"42")
        return status, text, user_id

    yield auth, ask
    req.close()
    auth.stop()


def raw(z85_key):
    return z85.decode(z85_key)


def test_an_authorized_key_passes_with_its_z85_as_user_id(zap, keys):
    auth, ask = zap
    good = security.load_public_key(keys["good_pub"])
    assert ask(b"rpcmm", b"CURVE", raw(good)) == (b"200", b"OK", good)
    assert (auth.allowed, auth.denied) == (1, 0)


def test_an_unknown_key_is_refused_and_logged_with_address_and_key(zap, keys, caplog):
    auth, ask = zap
    bad = security.load_public_key(keys["bad_pub"])
    with caplog.at_level(logging.WARNING, logger="rpcmm.security"):
        status, _, user_id = ask(b"rpcmm", b"CURVE", raw(bad))
    assert (status, user_id) == (b"400", b"")
    assert auth.denied == 1
    assert any("192.0.2.7" in r.getMessage() and bad.decode() in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("domain, mechanism, credentials, expected", [
    (b"rpcmm", b"NULL", [], b"400"),  # our domain demands CURVE
    (b"rpcmm", b"PLAIN", [b"user", b"password"], b"400"),
    (b"other", b"CURVE", [b"\0" * 32], b"400"),  # CURVE elsewhere is not ours to admit
    (b"other", b"NULL", [], b"200"),  # an unsecured socket in the same context keeps working
    (b"", b"NULL", [], b"200"),
])
def test_mechanisms_and_domains(zap, domain, mechanism, credentials, expected):
    _, ask = zap
    assert ask(domain, mechanism, *credentials)[0] == expected


def test_a_malformed_request_gets_an_error_and_the_handler_keeps_serving(zap, context, keys):
    auth, ask = zap
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.connect(security.ZAP_ENDPOINT)
    try:
        req.send_multipart([b"1.0", b"9", b"rpcmm"])
        assert req.recv_multipart()[2] == b"400"
    finally:
        req.close()
    good = security.load_public_key(keys["good_pub"])
    assert ask(b"rpcmm", b"CURVE", raw(good))[0] == b"200"
    assert auth.running


def test_one_authenticator_per_context(context):
    first = security.CurveAuthenticator(context, frozenset()).start()
    try:
        with pytest.raises(ConfigurationError, match="one authenticator per context"):
            security.CurveAuthenticator(context, frozenset()).start()
        with pytest.raises(LifecycleError):
            first.start()
    finally:
        first.stop()
    assert not first.running
    first.stop()  # idempotent
    # The endpoint is free again once stopped.
    security.CurveAuthenticator(context, frozenset()).start().stop()


def test_the_constructor_does_no_io(context):
    auth = security.CurveAuthenticator(context, frozenset())
    assert auth.zap_socket is None and not auth.running
    auth.stop()
