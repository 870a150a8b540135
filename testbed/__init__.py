"""Node-side agents of the mobile-workgroup testbed (run inside the containers)."""
