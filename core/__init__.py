"""artifactlog core: the domain (no I/O), application services, ports and their adapters."""
