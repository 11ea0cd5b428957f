"""Media relay daemon (sipedge-mediad): XDP fast path and userspace relay."""
