import os
import socket

def serve(path, stop):
    """Echo server on an AF_UNIX path until `stop` is set; starts safely, cleans up after itself."""
    ### BEGIN SOLUTION
    remove_stale(path)                      # raises if a live server owns the path
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
    except OSError:
        srv.close()
        raise
    try:                                    # from here on the file is ours to remove
        os.chmod(path, 0o600)
        srv.listen()
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                while data := conn.recv(65536):
                    conn.sendall(data)
    finally:
        srv.close()
        os.unlink(path)
    ### END SOLUTION
