def recv_exactly(sock, n):
    """Exactly n bytes from sock; EOFError if the peer closes first."""
    ### BEGIN SOLUTION
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)
    ### END SOLUTION
