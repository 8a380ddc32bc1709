"""The pure Sigma engine: compiled rules matched against events, no I/O."""
