import threading

def serve(listener, stop):
    """Serve each client in its own thread: one line in, b'done: ' + line out; until stop is set."""
    ### BEGIN SOLUTION
    def handle(conn):
        with conn:
            conn.settimeout(5)
            buf = b""
            while b"\n" not in buf:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                buf += chunk
            conn.sendall(b"done: " + buf)

    threads = []
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        t = threading.Thread(target=handle, args=(conn,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    ### END SOLUTION
