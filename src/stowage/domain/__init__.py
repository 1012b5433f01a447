"""Pure rules of Stowage: no I/O, no frameworks."""
