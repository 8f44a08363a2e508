"""Local stand-ins for services unreachable from here, speaking the real wire format."""
