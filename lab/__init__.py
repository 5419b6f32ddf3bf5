"""Lab infrastructure: the GPU suite run on lent machines (not part of the library)."""
