"""The TLS panel in plain Python: buttons as methods, real sockets, assertions on log, trace and widgets."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("trustme")

from socklab import ConfigError  # noqa: E402
from socklab.widgets.tls import TLSPanel  # noqa: E402


def test_panel_handshake_send_and_failures(leakcheck):
    p = TLSPanel(name="t-tls-panel")
    p.start_server()
    assert p.server.running and "listening" in p.status.value
    assert p.connect() is p.client and p.client.version() == "TLSv1.3"
    assert p.send_message("hello") == b"hello"
    assert "application_data" in p.records_view.value and "ClientHello" in p.records_view.value
    p.trust.value = False
    assert p.connect() is None and isinstance(p.last, Exception)  # explained in the alert, not returned
    assert "not trust" in p.alert.value or "does not trust" in p.alert.value
    p.trust.value, p.hostname.value = True, "example.org"
    p.connect()
    p.hostname.value, p.version.value = "127.0.0.1", "TLS 1.2"
    p.connect()
    assert p.client.version() == "TLSv1.2"
    p.close_client()
    p.stop_server()
    assert p.server is None
    lines = p.transcript().text.splitlines()
    assert lines[0].startswith("start server: TLS echo server listening")
    assert lines[1] == ("connect (server_hostname='localhost', trusts CA: yes, up to TLS 1.3): "
                        "handshake done, TLSv1.3 TLS_AES_256_GCM_SHA384") or "TLSv1.3" in lines[1]
    assert lines[2].startswith("  client -> server: handshake (ClientHello) | change_cipher_spec")
    assert lines[3] == ("send b'hello': 1 application_data record(s) of 22 bytes on the wire; "
                        "echo b'hello'")
    assert lines[4].startswith("connect (server_hostname='localhost', trusts CA: no, up to TLS 1.3): "
                               "FAILED: The certificate is signed by a CA this client does not trust")
    assert lines[5] == "  the server saw: The client rejected our certificate [SSLError: TLSV1_ALERT_UNKNOWN_CA]"
    assert "FAILED: The certificate is not valid for that host name" in lines[6]
    assert "SSLV3_ALERT_BAD_CERTIFICATE" in lines[7]
    assert "handshake done, TLSv1.2" in lines[8]
    assert "client:" in p.trace_view().text


def test_send_connects_and_rerun_stops_old_panel():
    a = TLSPanel(name="t-tls-rerun")
    assert a.send_message("x") == b"x"
    b = TLSPanel(name="t-tls-rerun")
    assert a.server is None and a.client is None
    b.stop()


def test_text_repr():
    p = TLSPanel(name="t-tls-repr")
    assert "TLS panel" in p._repr_mimebundle_()["text/plain"]
    assert p.transcript().text == "(nothing yet)"
    p.stop()


@pytest.mark.parametrize("kwargs,words", [(dict(version="SSL 3"), "'TLS 1.3', 'TLS 1.2'"),
                                          (dict(hostname="evil.example"), "'localhost'")])
def test_an_unknown_choice_is_explained_with_the_choices(kwargs, words):
    with pytest.raises(ConfigError) as err:
        TLSPanel(name="t-tls-bad", **kwargs)
    assert words in err.value.explanation.text()


@pytest.mark.parametrize("kwargs,words", [
    (dict(trust_ca="yes"), "trust_ca must be True or False, got str"),
    (dict(trust_ca=1), "trust_ca must be True or False, got int 1"),
    (dict(message=5), "message must be text (str or bytes), got int 5")])
def test_a_setting_of_the_wrong_type_is_explained(kwargs, words):
    """These used to end in ipywidgets' TraitError traceback (trust_ca=1 was taken as True)."""
    with pytest.raises(ConfigError) as err:
        TLSPanel(name="t-tls-type", **kwargs)
    assert words in err.value.explanation.what


def test_a_host_name_set_from_code_is_explained_and_not_taken():
    """t.hostname.value = 'nope' used to raise ipywidgets' bare 'Invalid selection: value not found'."""
    import traitlets
    p = TLSPanel(name="t-tls-choice")
    with pytest.raises(ConfigError) as err:
        p.hostname.value = "nope"
    assert isinstance(err.value, traitlets.TraitError)  # what ipywidgets catches to undo a change
    assert "hostname='nope' is not one of this panel's choices" in err.value.explanation.what
    assert "'localhost', '127.0.0.1', 'example.org'" in err.value.explanation.fix
    assert p.hostname.value == "localhost"
    p.stop()


def test_send_message_takes_str_or_bytes(leakcheck):
    """Bytes used to fail with AttributeError("'bytes' object has no attribute 'encode'")."""
    p = TLSPanel(message=b"box", name="t-tls-bytes")
    try:
        assert p.send_message(b"raw \xff") == b"raw \xff"
        assert p.send_message("hé") == "hé".encode("utf-8")
        assert p.send_message() == b"box"
        with pytest.raises(ConfigError) as err:
            p.send_message(5)
        assert "text must be a str or bytes, got int 5" in err.value.explanation.what
        sends = [line.split(":")[0] for line in p.transcript().text.splitlines() if line.startswith("send")]
        assert sends == ["send b'raw \\xff'", "send b'h\\xc3\\xa9'", "send b'box'"]
    finally:
        p.stop()
