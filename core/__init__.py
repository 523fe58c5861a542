"""What both programs share: names and ids, the run-status rules, settings and logging, the
systemd notify protocol, the read-only opener. Nothing here loads the writer or the server."""
