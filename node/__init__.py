"""Everything that runs inside one daemon: I/O, time, processes, persistence."""
