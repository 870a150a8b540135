"""Host-side orchestration: topology model, backends, links, lifecycle, command line."""
