"""Local stand-ins for services that cannot be reached from here; each speaks the real wire format."""
