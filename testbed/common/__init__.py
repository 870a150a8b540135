"""What every node-side agent needs alike: reading its config file and writing its status file."""
