"""Studies: the one Optuna study runner that the architecture search, the coefficient grid and the proxy check share.

Lowest first: `trial_attrs` (the names of what a trial records), `study_config` and `study_job` (a study's
settings and the job it runs), `journal`, `storage`, `storage_failures` and `recovery` (where trials live and
how a crashed worker's trial comes back), `opening` (the settings fingerprint), `worker_seeds`, `trial_records`,
`worker_loop`, `workers` and `runner` (running one worker or many until a stop), `chance` (the chance level of a
validation split), `html_report` (a run's report page); on them `proxy_check` and `rank` (how well a proxy ranks).
"""
