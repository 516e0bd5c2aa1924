"""The write side: commits (``workers.commit``), dialogs (``workers.dialog``) and the simulator
(``workers.simulator``). Imports the kernel (``callhub``), never ``hub``."""
