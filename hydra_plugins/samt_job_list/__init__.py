"""samt's Hydra sweeper plugin: a multirun over a listed set of jobs (``hydra/sweeper=job_list``).

It lives in Hydra's plugin namespace (``hydra_plugins``) because Hydra instantiates sweepers
only from there; the config is ``conf/hydra/sweeper/job_list.yaml``.
"""
