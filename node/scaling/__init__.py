"""Starting and stopping daemon processes (grows into the sibling supervisor)."""
