def update_checksum(csum, old, new):
    """The checksum after one 16-bit word of the message changed from old to new (RFC 1624)."""
    ### BEGIN SOLUTION
    total = (~csum & 0xFFFF) + (~old & 0xFFFF) + new   # the sum, old taken out, new put in
    while total >> 16:                      # fold the carries back in
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
    ### END SOLUTION
