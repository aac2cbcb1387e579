import socket

def queue_capacity(backlog, timeout=0.5):
    """How many clients connect to a listen(backlog) socket that never accepts."""
    ### BEGIN SOLUTION
    clients = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(backlog)
        try:
            while len(clients) < 32:
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.settimeout(timeout)
                try:
                    c.connect(lst.getsockname())
                except (TimeoutError, BlockingIOError):
                    c.close()
                    break
                clients.append(c)
        finally:
            for c in clients:
                c.close()
    return len(clients)
    ### END SOLUTION
