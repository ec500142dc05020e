/* The stand-in ocfs2_controld.<stack> as a real executable, so that the daemon
 * process's /proc/PID/exe is this file, as it is for the real daemon.
 *
 * Launcher (no PYHA_O2CBSIM_RUN): hand over to o2cbsim.py, which checks the
 * kernel's cluster_stack label like the real daemon and daemonises; it then
 * re-executes this file (PYHA_O2CBSIM_EXE) with PYHA_O2CBSIM_RUN set.
 * Daemon (PYHA_O2CBSIM_RUN=normal|stubborn): wait for signals; "stubborn"
 * ignores SIGTERM.  Built by tests/test_o2cb.py with -DSIMPY="<o2cbsim.py>".
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *mode = getenv("PYHA_O2CBSIM_RUN");
    if (mode) {
        if (strcmp(mode, "stubborn") == 0)
            signal(SIGTERM, SIG_IGN);
        for (;;)
            pause();
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    exe[n] = '\0';
    setenv("PYHA_O2CBSIM_EXE", exe, 1);
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args)
        return 1;
    args[0] = "python3";
    args[1] = "-IS";
    args[2] = SIMPY;
    for (int i = 1; i < argc; i++)
        args[i + 2] = argv[i];
    execv("/usr/bin/python3", args);
    perror("execv /usr/bin/python3");
    return 127;
}
