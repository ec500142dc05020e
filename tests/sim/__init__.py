"""Device simulators for the fence-agent tests, driven over real sockets."""
