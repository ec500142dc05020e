"""The DRBD tools seam: ``drbdadm`` and ``drbdsetup`` (and the module tools), one argv each.

Every call goes through the caller's ``run`` (``Context.run``: bounded by the
action's deadline) and returns its :class:`ocf_lib.proc.Result`; the caller
decides what an exit code means for its action.  Resource names reach this
module already validated by the agent's parameter type (no leading ``-``, not
``all``), so they can never be read as options.

``drbdadm`` reads the configuration (``-c <drbdconf>``) and plans the kernel
calls; it is what start, promote and demote use.  ``drbdsetup`` talks to the
kernel directly: the state (``events2``) and the stop path when the
configuration is unusable, since a resource must come down even when its
drbd.conf is gone.  drbdsetup exit codes worth naming: 10 (no such resource /
configuration failure), 11 (state change refused), 17 (no access to
UpToDate data), 20 (module missing).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .proc import Result

NO_SUCH_RESOURCE = 10
NEED_UPTODATE_DATA = 17


class DrbdTools:
    def __init__(self, run: Callable[..., Result], conf: str) -> None:
        self._run = run
        self.conf = conf

    # -- drbdsetup: the kernel ---------------------------------------------------

    def events2(self, res: str | None = None, *, statistics: bool = True) -> Result:
        """One ``events2 --now`` snapshot of ``res`` (None: every resource)."""
        argv = ["drbdsetup", "events2", "--now"]
        if statistics:
            argv.append("--statistics")
        if res is not None:
            argv.append(res)
        return self._run(argv, timeout=15, quiet=True)

    def kernel_minors(self, res: str) -> Result:
        """DRBD 8.4: ``sh-status <res>``, the kernel's volumes of ``res`` (``_minor=N``)."""
        return self._run(["drbdsetup", "sh-status", res], timeout=15, quiet=True)

    def setup(self, verb: str, res: str) -> Result:
        """``drbdsetup secondary|down <res>``: no configuration needed."""
        return self._run(["drbdsetup", verb, res], timeout=30)

    # -- drbdadm: the configuration --------------------------------------------------

    def adm(self, *args: str, timeout: float = 60, quiet: bool = False) -> Result:
        return self._run(["drbdadm", "-c", self.conf, *args], timeout=timeout, quiet=quiet)

    def devices(self, res: str, *, stacked: bool = False) -> Result:
        """``sh-dev``: the resource's device paths; fails when drbd.conf lacks it."""
        return self.adm(*(["--stacked"] if stacked else []), "sh-dev", res, timeout=20)

    def minors(self, res: str) -> Result:
        return self.adm("sh-minor", res, timeout=20)

    def module_parameters(self) -> Result:
        return self.adm("sh-mod-parms", timeout=20, quiet=True)

    def dump(self, res: str) -> Result:
        return self.adm("dump", res, timeout=20)

    def adjust(self, res: str, *, skip_net: bool = False, verbose: bool = False,
               timeout: float = 60) -> Result:
        args = ["-v"] if verbose else []
        args.append("adjust")
        if skip_net:
            args.append("--skip-net")
        return self.adm(*args, res, timeout=timeout)

    def role(self, verb: str, res: str) -> Result:
        """``primary``, ``secondary``, ``down`` or ``outdate`` through the configuration."""
        return self.adm(verb, res)

    def unfence_peer(self, res: str, extra_args: str) -> Result:
        # drbdadm hands UNFENCE_EXTRA_ARGS to the handler through the environment.
        return self._run(["drbdadm", "-c", self.conf, "unfence-peer", res], timeout=10,
                         extra_env={"UNFENCE_EXTRA_ARGS": extra_args})

    # -- the module ------------------------------------------------------------------

    def installed_version(self) -> Result:
        """The version of the module ``modprobe`` would load (``modinfo``)."""
        return self._run(["modinfo", "-F", "version", "drbd"], timeout=10, quiet=True)

    def load_module(self, parameters: list[str]) -> Result:
        return self._run(["modprobe", "-s", "drbd", *parameters], timeout=30)


def why(r: Result) -> str:
    """The kernel's own words from a failed call (not drbdadm's 'Command ... terminated')."""
    for line in (r.err + r.out).splitlines():
        if "State change failed" in line or "Failure:" in line or "No such resource" in line:
            return line.strip()
    return str(r.reason())
