import socket
import ssl

def tls_request(address, ca_file, hostname, data):
    """Send data over TLS to a server whose certificate ca_file's CA signed for hostname; the echo."""
    ### BEGIN SOLUTION
    context = ssl.create_default_context(cafile=ca_file)   # verifies the chain and the name
    with socket.create_connection(address, timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(data)
            reply = b""
            while len(reply) < len(data):
                chunk = tls.recv(len(data) - len(reply))
                if not chunk:
                    raise EOFError("the server closed early")
                reply += chunk
    return reply
    ### END SOLUTION
