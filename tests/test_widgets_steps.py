"""StepPanel on real sockets: each button method makes the real call, records it, shows the kernel."""
from __future__ import annotations

import socket
import time

import pytest

import socklab
from socklab import runtime
from socklab.widgets.steps import StepPanel, kernel_state, summary

pytestmark = pytest.mark.timeout(60)


def test_stream_run_shows_each_state(leakcheck):
    p = StepPanel(name="t-stream")
    p.run_demo()
    st = [s.state for s in p.steps]
    names = [(s.side, s.step) for s in p.steps]
    assert names == [("server", "socket"), ("server", "bind"), ("server", "listen"), ("client", "socket"),
                     ("client", "connect"), ("server", "accept"), ("client", "send"),
                     ("server", "exchange"), ("client", "recv"), ("client", "close"), ("server", "close")]
    assert all(not s.error for s in p.steps)
    assert st[0].startswith("nothing listed")
    assert "LISTEN" not in st[1]  # bound, not listening
    assert st[2] == "server LISTEN (accept queue 0, backlog 5)"
    assert st[4] == ("server LISTEN (accept queue 1, backlog 5); client ESTABLISHED; "
                     "(in accept queue) ESTABLISHED")
    assert st[5] == "server LISTEN (accept queue 0, backlog 5); client ESTABLISHED; server/conn1 ESTABLISHED"
    assert "server/conn1 ESTABLISHED (5 bytes unread)" in st[6]
    assert "client ESTABLISHED (5 bytes unread)" in st[7]
    assert "client FIN-WAIT (closed first); server/conn1 CLOSE-WAIT" in st[9]
    assert st[10] == "client TIME-WAIT"
    assert p.steps[8].result == "reply = b'hello'"
    # the trace has the real calls, side by side
    assert p.trace.calls("server") == ["socket", "settimeout", "bind", "listen", "accept", "close"]
    assert p.trace.calls("client") == ["socket", "settimeout", "connect", "sendall", "recv", "close"]
    assert p.trace.calls("server/conn1") == ["settimeout", "recv", "sendall", "close"]
    # widgets: buttons say done, the code views hold the programs, the history view the steps
    assert p.server_button.description == "Server: done"
    assert p.client_button.description == "Client: done"
    assert "srv.listen(5)" in p.server_code.value and "conn, addr = srv.accept()" in p.server_code.value
    assert "cli.sendall(b&#x27;hello&#x27;)" in p.client_code.value
    assert "TIME-WAIT" in p.steps_view.value
    prog = p.program("server")
    assert prog.startswith("import socket\n") and "srv.close()" in prog
    assert "accept()" in p.transcript().text and "(no steps yet)" not in p.history().text
    p.reset()
    assert p.steps == [] and p.history().text == "(no steps yet)"


def test_buttons_label_the_next_step():
    p = StepPanel(name="t-labels")
    assert p.server_button.description == "Server step 1/6: socket()"
    assert p.client_button.description == "Client step 1/5: socket()"
    p.server_step()
    assert p.server_button.description == "Server step 2/6: bind()"
    p.type.value = "SOCK_DGRAM"  # changing a picker starts again
    assert p.steps == [] and p.server_button.description == "Server step 1/4: socket()"
    assert p.backlog.disabled
    p.reset()


def test_each_step_keeps_its_python_line():
    p = StepPanel(name="t-code", backlog=2)
    for _ in range(3):
        p.server_step()
    assert [s.code.splitlines()[0] for s in p.steps] == [
        "srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
        "srv.bind(('127.0.0.1', 0))  # port 0: any free port", "srv.listen(2)"]
    assert p.steps[2].state == "server LISTEN (accept queue 0, backlog 2)"
    assert "srv.listen(2)" in p.code().text
    p.reset()


def test_connect_before_bind_is_explained_without_a_call():
    p = StepPanel(name="t-early")
    p.client_step()
    assert p.client_step() is None  # no address to connect to
    assert "no address yet" in p.alert.value
    assert p.trace.calls("client") == ["socket", "settimeout"]
    assert p.next_step("client") == "connect"
    p.reset()


def test_connect_before_listen_is_refused_and_the_client_starts_again(leakcheck):
    p = StepPanel(name="t-refused")
    p.server_step()
    p.server_step()  # bound, not listening
    p.client_step()
    step = p.client_step()
    assert step.error.startswith("ConnectionRefusedError(111")
    assert "Connection refused" in p.alert.value
    assert p.next_step("client") == "socket" and p.cli is None
    assert p.trace.calls("client")[-2:] == ["connect", "close"]
    p.server_step()  # listen; now a new client gets in
    p.client_step()
    assert not p.client_step().error
    p.reset()


def test_accept_waits_in_a_thread_until_the_client_connects(leakcheck):
    p = StepPanel(name="t-bg")
    for _ in range(3):
        p.server_step()
    pending = p.server_step()  # accept(): nobody there yet
    assert pending.n == 0 and p.server_button.disabled
    assert p.server_button.description == "Server: waiting in accept() ..."
    assert p.server_step() is None and "still waiting" in p.alert.value
    p.client_step()
    p.client_step()  # connect: the thread's accept() returns
    assert p.wait(5)
    accepted = [s for s in p.steps if s.step == "accept"]  # before or after connect's: a race
    assert len(accepted) == 1 and accepted[0].result.startswith("addr = ")
    assert not p.server_button.disabled
    assert any(line.startswith("server/conn1 ") and "ESTABLISHED" in line
               for line in p.state().text.splitlines())
    p.reset()


def test_reset_wakes_a_waiting_accept_at_once(leakcheck):
    p = StepPanel(name="t-wake", timeout=30)
    for _ in range(4):
        p.server_step()
    t0 = time.monotonic()
    p.reset()
    assert time.monotonic() - t0 < 2  # not the 30 s timeout
    assert p.steps == [] and not any(p._busy.values())


def test_recv_timeout_is_explained_and_can_be_retried():
    p = StepPanel(name="t-timeout", timeout=0.3)
    for _ in range(3):
        p.server_step()
    p.client_step()
    p.client_step()
    p.server_step()
    assert p.wait(2)
    p.server_step()  # exchange: recv() but the client sent nothing
    assert p.wait(2)
    last = p.steps[-1]
    assert last.step == "exchange" and last.error.startswith("TimeoutError")
    assert "Timed out" in p.alert.value
    assert p.next_step("server") == "exchange"  # the step stays, to retry
    p.reset()


@pytest.mark.parametrize("family,type_", [("AF_INET", "SOCK_DGRAM"), ("AF_UNIX", "SOCK_STREAM"),
                                          ("AF_UNIX", "SOCK_DGRAM"), ("AF_INET6", "SOCK_STREAM")])
def test_other_families_and_types(family, type_, leakcheck):
    if family == "AF_INET6" and not runtime.has_ipv6():
        pytest.skip("no IPv6 here")
    p = StepPanel(family=family, type=type_, name=f"t-{family}-{type_}")
    p.run_demo()
    assert all(not s.error for s in p.steps), p.history_text()
    replies = [s.result for s in p.steps if s.side == "client" and s.step == "recv"]
    assert replies == ["reply = b'hello'"]
    if type_ == "SOCK_DGRAM":
        assert "listen" not in p.trace.calls("server")
        assert "UNCONN" in p.steps[1].state  # a bound datagram socket
    if family == "AF_UNIX":
        assert "<rundir>/" in p.history_text()
    p.reset()


def test_unix_datagram_client_binds_its_own_path():
    p = StepPanel(family="AF_UNIX", type="SOCK_DGRAM", name="t-unix-dgram")
    assert p.steps_for("client") == ("socket", "bind", "send", "recv", "close")
    p.reset()


def test_rerun_with_the_same_name_stops_the_old_panel(leakcheck):
    a = StepPanel(name="t-rerun")
    for _ in range(3):
        a.server_step()
    assert a.srv is not None and not a.srv.closed
    old = a.srv
    b = StepPanel(name="t-rerun")
    assert old.closed and a.steps == []
    b.reset()


def test_stop_all_stops_the_panel_and_a_click_registers_it_again():
    p = StepPanel(name="t-stopall")
    p.server_step()
    old = p.srv
    socklab.stop_all()
    assert old.closed and p not in runtime.running()
    p.server_step()
    assert p in runtime.running()
    p.reset()


def test_message_picker_is_what_the_client_sends():
    p = StepPanel(name="t-msg")
    p.message.value = "héllo"
    p.run_demo()
    assert any("cli.sendall(b'h\\xc3\\xa9llo')" in s.code for s in p.steps)
    p.reset()


def test_kernel_state_of_hand_made_sockets(leakcheck):
    srv = socklab.socket("AF_INET", "SOCK_STREAM", name="t-ks-srv")
    assert "lists nothing" in kernel_state(srv).text
    srv.bind(("127.0.0.1", 0))
    srv.listen(3)
    cli = socklab.socket("AF_INET", "SOCK_STREAM", trace=srv.trace, side="client", name="t-ks-cli")
    cli.settimeout(5)
    cli.connect(srv.getsockname())
    text = kernel_state(srv, cli).text
    lines = text.splitlines()
    assert lines[1].split()[:2] == ["server", "tcp"] and "LISTEN" in lines[1]
    assert "client" in lines[2] and "ESTABLISHED" in lines[2]
    assert "(in accept queue)" in lines[3]
    srv.settimeout(5)
    conn, _ = srv.accept()
    text = kernel_state(srv, cli, conn).text
    assert "server/conn1" in text and "(in accept queue)" not in text
    conn.close()
    cli.close()
    srv.close()


def test_kernel_state_of_plain_sockets_and_udp(leakcheck):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        text = kernel_state(u).text
    assert "UNCONN" in text and "udp" in text


def test_summary_of_nothing():
    assert summary([]) == "nothing listed"


@pytest.mark.parametrize("bad", [None, "10", -1, 0, True, float("nan"), 1e9])
def test_a_timeout_that_could_hang_or_fail_is_refused_when_the_panel_is_made(bad, leakcheck):
    """None used to end in a raw TypeError at the first step, "10" in a raw ValueError, -1 in a
    failing socket() step, 0 in a non-blocking accept() that cannot wait for the client."""
    with pytest.raises(socklab.ConfigError) as err:
        StepPanel(timeout=bad, name="t-step-timeout")
    assert f"timeout={bad!r}" in err.value.explanation.text()
    p = StepPanel(timeout=2, name="t-step-timeout-ok")
    with pytest.raises(socklab.ConfigError):
        p.timeout = None  # later too: a step's socket must never wait forever
    assert p.timeout == 2 and p.server_step().step == "socket"
    assert "srv.settimeout(2)" in p.program("server")
    p.reset()


def test_family_and_type_as_socketconfig_reads_them_or_explained():
    p = StepPanel(family="inet", type=socket.SOCK_DGRAM, name="t-step-choice")
    assert (p.family.value, p.type.value) == ("AF_INET", "SOCK_DGRAM")
    p.reset()
    for kwargs, words in ((dict(family="udp"), "AF_INET, AF_INET6"),
                          (dict(type="SOCK_RAW"), "'SOCK_STREAM', 'SOCK_DGRAM'")):
        with pytest.raises(socklab.ConfigError) as err:
            StepPanel(name="t-step-choice-bad", **kwargs)
        assert words in err.value.explanation.text()


@pytest.mark.parametrize("kwargs", [dict(backlog=-1)])
def test_steppanel_refuses_numbers_outside_its_controls(kwargs):
    with pytest.raises(socklab.ConfigError) as err:
        StepPanel(name="t-range", **kwargs)
    assert "outside this panel's range" in err.value.explanation.what


def test_a_huge_message_is_shown_shortened_as_the_trace_shows_it(leakcheck):
    """The whole message is sent; the steps, code and history show its first bytes and its size."""
    p = StepPanel(name="t-huge")
    p.message.value = "x" * 100_000
    text = p.run_demo().text
    assert all(not s.error for s in p.steps), p.history_text()
    sent = [e for e in p.trace if e.side == "client" and e.call == "sendall"]
    assert [e.nbytes for e in sent] == [100_000]  # the real call got all of it
    assert len(text) < 5000 and max(len(line) for line in text.splitlines()) < 200
    assert "cli.sendall(b'" + "x" * 32 + "'...(100000 bytes))" in text
    assert "=> reply = b'" + "x" * 32 + "'...(1024 bytes)" in text
    for view in (p.steps_view.value, p.client_code.value, p.server_code.value):
        assert len(view) < 10_000
    p.reset()


def test_a_timed_out_exchange_names_the_recv_that_waited(leakcheck):
    """The step is 'exchange' (recv, then sendall): the explanation names the call that waited."""
    p = StepPanel(name="t-exchange-timeout", timeout=0.2)
    for side in ("server", "server", "server", "client", "client", "server"):
        p._step(side)
        assert p.wait(2)
    p.server_step()  # the client sent nothing: recv() times out
    assert p.wait(2)
    assert p.steps[-1].step == "exchange" and p.steps[-1].error.startswith("TimeoutError")
    assert p.error.what == "recv() waited for its whole timeout and no data arrived."
    assert "exchange()" not in p.alert.value and "who sends first" in p.alert.value
    p.reset()


def test_a_message_utf8_cannot_encode_is_explained_and_the_demo_stops_there(leakcheck):
    p = StepPanel(name="t-surrogate")
    try:
        p.message.value = "ab\udcff"  # what errors='surrogateescape' leaves for a byte 0xff
        text = p.run_demo().text
        assert "sendall" not in text and "exchange" not in text, text  # stopped before sending
        assert "cannot encode" in p.alert.value and "position 2" in p.alert.value
    finally:
        p.reset()


def test_check_data_explains_a_str_utf8_cannot_encode():
    from socklab import ConfigError
    from socklab.widgets.base import check_data
    with pytest.raises(ConfigError) as err:
        check_data("message", "ab\udcff")
    assert "'\\udcff' at position 2" in str(err.value)
