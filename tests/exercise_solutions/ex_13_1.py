import struct

def checksum(data):
    """The Internet checksum (RFC 1071) of data, as an int from 0 to 65535."""
    ### BEGIN SOLUTION
    if len(data) % 2:
        data += b"\0"                       # pad an odd length with a zero byte
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:                      # fold the carries back in
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
    ### END SOLUTION
