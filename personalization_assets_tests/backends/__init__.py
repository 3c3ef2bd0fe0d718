"""Azure backends through the real SDKs, against the loopback double."""
