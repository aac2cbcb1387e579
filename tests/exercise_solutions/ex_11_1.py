import socket

def http_get(address, path):
    """GET path from address over HTTP/1.1; (status, body), the body framed by Content-Length."""
    ### BEGIN SOLUTION
    host, port = address[:2]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii")
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise EOFError("the connection closed inside the response head")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = s.recv(length - len(body))
            if not chunk:
                raise EOFError("the connection closed inside the body")
            body += chunk
    return status, body
    ### END SOLUTION
