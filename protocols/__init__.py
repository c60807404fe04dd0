"""What nodes say to each other: each protocol a pure state machine (no I/O, no clock) plus its wire schema."""
