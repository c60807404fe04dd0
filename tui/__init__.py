"""The terminal UI (`sovereign tui`): Textual, talking only to the daemon's control socket."""
