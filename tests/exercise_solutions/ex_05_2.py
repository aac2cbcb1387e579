def echo_handler(conn, server):
    """socklab.Server handler: send back everything received until the client shuts down."""
    ### BEGIN SOLUTION
    while True:
        data = conn.recv(65536)
        if not data:          # b'': the client will send no more
            return
        conn.sendall(data)    # sendall, never a lone send
    ### END SOLUTION
