def ping_backoff(sock, address, seq, timeout=0.1, tries=3):
    """Send 'ping <seq>' until its reply comes; wait twice as long after each try. Tries, or None."""
    ### BEGIN SOLUTION
    request = b"ping %d" % seq
    for attempt in range(1, tries + 1):
        sock.settimeout(timeout * 2 ** (attempt - 1))   # 0.1 s, 0.2 s, 0.4 s
        sock.sendto(request, address)
        try:
            while True:
                reply, _ = sock.recvfrom(1024)
                if reply == request:
                    return attempt
                # a late reply to another ping: ignore it, keep waiting
        except TimeoutError:
            continue
    return None
    ### END SOLUTION
