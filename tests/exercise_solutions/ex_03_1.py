import errno
import os
import socket
import stat

def bind_unix(path):
    """An AF_UNIX stream socket bound to `path` and listening; removes a stale file, never a live one."""
    ### BEGIN SOLUTION
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):  # someone's file: connect() would be refused too
            raise FileExistsError(errno.EEXIST, "not a socket file", path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)            # nobody listens: a stale file
            else:
                raise OSError(errno.EADDRINUSE, "a server is listening there", path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        srv.listen()
    except OSError:
        srv.close()
        raise
    return srv
    ### END SOLUTION
