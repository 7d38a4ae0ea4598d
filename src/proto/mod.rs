//! The sans-I/O protocol core: bytes in, events out; events in, bytes out. No sockets here.
