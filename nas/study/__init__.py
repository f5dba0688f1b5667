"""Studies: search spaces, rewards, storage, the study runner, the architecture search and its report."""
