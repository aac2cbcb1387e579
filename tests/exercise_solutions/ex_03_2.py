import socket

def reusable_server(port):
    """A TCP socket listening on ('127.0.0.1', port), even while the port is in TIME_WAIT."""
    ### BEGIN SOLUTION
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # before bind()
        srv.bind(("127.0.0.1", port))
        srv.listen()
    except OSError:
        srv.close()
        raise
    return srv
    ### END SOLUTION
