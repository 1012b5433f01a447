"""The Stowage agent: runs next to a cluster, heartbeats to the control plane, pulls work, reaches the bucket."""
