"""Ids drawn many at a time from the OS's CSPRNG (gateway/random_ids.py)."""

from __future__ import annotations

import os

from gateway.jobs import new_job_id
from gateway.random_ids import RandomIds


def test_ids_have_the_prefix_and_96_bits_and_do_not_repeat_across_batches() -> None:
    ids = RandomIds("x-", batch=4)
    drawn = [ids() for _ in range(4 * 50)]
    assert all(len(i) == 2 + 24 and int(i[2:], 16) >= 0 for i in drawn)
    assert len(set(drawn)) == len(drawn)


def test_a_forked_child_does_not_hand_out_its_parents_job_ids() -> None:
    new_job_id()  # the parent has ids drawn ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        try:
            os.write(write, new_job_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    childs = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    assert childs.startswith("job-") and childs != new_job_id()
