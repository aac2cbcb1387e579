import struct

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

def send_msg(sock, data):
    """Send one message: a 4-byte big-endian length, then the data, in one sendall()."""
    ### BEGIN SOLUTION
    sock.sendall(struct.pack("!I", len(data)) + data)
    ### END SOLUTION

def recv_msg(sock):
    """The next message; None at a clean end; EOFError if the stream ends inside a message."""
    ### BEGIN SOLUTION
    first = sock.recv(1)
    if not first:
        return None           # closed between messages: the end of the conversation
    (size,) = struct.unpack("!I", first + recv_exactly(sock, 3))
    return recv_exactly(sock, size)
    ### END SOLUTION
