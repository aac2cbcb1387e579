import socket

def make_server():
    """A TCP socket listening on 127.0.0.1, on a port the OS picks; the caller closes it."""
    ### BEGIN SOLUTION
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    return srv
    ### END SOLUTION
