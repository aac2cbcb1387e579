import socket
import threading

def connect_with_retry(address, tries=5, delay=0.1, timeout=0.5):
    """Connect, retrying refusals and timeouts (not other errors); return the connected socket."""
    ### BEGIN SOLUTION
    last = None
    for attempt in range(tries):
        if attempt:
            threading.Event().wait(delay)   # or time.sleep(delay)
        try:
            return socket.create_connection(address, timeout=timeout)
        except (ConnectionRefusedError, TimeoutError) as exc:
            last = exc                      # nobody listens yet, or the queue is full: retry
    raise last
    ### END SOLUTION
