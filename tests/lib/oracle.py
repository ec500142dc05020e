"""A differential state oracle: pyha's agent and its upstream twin probe the same
real state, and a third, independent view (the kernel, libvirt) says what is true.

The oracle only compares read-only probes: upstream's recurring monitors have side
effects (status files, saved configurations), and upstream runs under a time limit
because some of its loops end only when the caller kills them.

A row fails when
* pyha answers "not running" (7) while the independent view says the resource is
  active (the lie that leads to a second copy), or
* pyha and upstream disagree on "running or not" and the row is not in the
  documented list of deliberate differences (:data:`DIFFERENCES`).
"""

from __future__ import annotations

from dataclasses import dataclass

# rc -> what it says about the resource; 1 (error) says nothing either way.
RUNNING = {0: True, 8: True, 9: True, 7: False}

# (agent, row) -> why pyha deliberately answers differently from upstream there.
# Keep in step with docs/operator.md, "What running means".
DIFFERENCES: dict[tuple[str, str], str] = {
    ("Filesystem", "other-fs-on-mountpoint"):
        "another filesystem is mounted on the mount point and the configured device is "
        "not: upstream matches the mount point only and answers 0 (its stop would then "
        "unmount a filesystem that is not its own); pyha answers 7, which findmnt confirms",
    ("Xen", "name-with-space-by-pyha"):
        "the config names the domain \"web vm\": upstream takes the first word (\"web\") "
        "and answers 7 while \"web vm\" runs (a false 'stopped'); pyha reads the whole "
        "quoted xl string and answers 0",
}


@dataclass
class Answer:
    agent: str
    row: str
    pyha: int
    upstream: int | None  # None: upstream did not answer within its time limit
    truth: bool

    def problems(self) -> list[str]:
        found = []
        if self.pyha == 7 and self.truth:
            found.append("pyha says not running (7) while the resource is active")
        if self.pyha in (0, 8) and not self.truth:
            found.append(f"pyha says running ({self.pyha}) while the resource is not active")
        mine = RUNNING.get(self.pyha)
        theirs = None if self.upstream is None else RUNNING.get(self.upstream)
        if mine is not None and theirs is not None and mine != theirs \
                and (self.agent, self.row) not in DIFFERENCES:
            found.append(f"pyha {self.pyha} and upstream {self.upstream} disagree on running, "
                         "and the difference is not documented")
        return found

    def __str__(self) -> str:
        return (f"{self.agent}/{self.row}: pyha {self.pyha}, upstream {self.upstream}, "
                f"active {self.truth}")
