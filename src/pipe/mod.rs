//! Connections: framed byte messages over Unix-domain sockets (Python's `Pipe`/`Connection`), and `Listener`/`Client` with an authkey handshake.
