"""Process-level runtime: Horovod ranks, thread settings and rank-zero helpers."""
