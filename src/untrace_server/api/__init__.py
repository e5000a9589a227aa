"""HTTP plumbing shared by every endpoint: errors, auth dependency, request metrics."""
