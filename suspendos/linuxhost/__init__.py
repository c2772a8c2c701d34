"""Running suspendos on the Linux machine itself (as root): `suspendos hibernate`
(hibernate.py) and `suspendos install-resume` (install.py), with their helpers: the host's
view of itself (host.py), the module build cache (module.py) and the stale-image guard's
configuration (guard.py). docs/LINUX.md describes the whole flow."""
