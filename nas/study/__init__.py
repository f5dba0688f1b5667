"""Studies: rewards, storage, the study runner, the architecture search and its report, the proxies' rank check."""
