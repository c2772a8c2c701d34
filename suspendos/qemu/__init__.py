"""Running the QEMU test machine: the process, its QMP and serial sockets, and the jobs
(suspend, resume, probe) built on them."""
