"""What a run leaves on disk: its output directory and its checkpoints."""
