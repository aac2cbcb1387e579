def upper_lines_limited(conn, server):
    """Reply to each line in capitals; more than 1024 bytes without a newline: an error, then close."""
    ### BEGIN SOLUTION
    buf = b""
    while data := conn.recv(4096):
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            conn.sendall(line.upper() + b"\n")
        if len(buf) > 1024:                     # an unfinished line that is too long
            conn.sendall(b"ERROR line too long\n")
            return
    ### END SOLUTION
