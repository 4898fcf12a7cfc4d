/*
 * Benchmark child, the same program for every supervisor.
 *
 * On start it records CLOCK_MONOTONIC (ns) and its pid in a timestamp file, then waits
 * for a signal. The file is argv[1] if that is an absolute path; otherwise (runit and
 * s6 run ./run with no arguments, or the service name) it is
 * $BENCH_TS_DIR/<name of the current directory>. Further arguments are ignored.
 * In a service directory with a `notification-fd` file (s6), it then signals readiness:
 * a newline on that descriptor.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);

    char path[PATH_MAX + 256];
    if (argc > 1 && argv[1][0] == '/') {
        snprintf(path, sizeof path, "%s", argv[1]);
    } else {
        const char *dir = getenv("BENCH_TS_DIR");
        char cwd[PATH_MAX];
        if (dir == NULL || getcwd(cwd, sizeof cwd) == NULL) return 111;
        const char *base = strrchr(cwd, '/');
        snprintf(path, sizeof path, "%s/%s", dir, base ? base + 1 : cwd);
    }

    char line[64];
    long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
    int len = snprintf(line, sizeof line, "%lld %d\n", ns, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return 111;
    if (write(fd, line, (size_t)len) != len) return 111;
    close(fd);

    char notify[16];
    int nfd = open("notification-fd", O_RDONLY | O_CLOEXEC);
    if (nfd >= 0) {
        ssize_t got = read(nfd, notify, sizeof notify - 1);
        close(nfd);
        if (got > 0) {
            notify[got] = 0;
            int ready = atoi(notify);
            if (write(ready, "\n", 1) == 1) close(ready);
        }
    }

    /* Whatever the supervisor left ignored or blocked, die on the usual stop signals. */
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    for (;;) pause();
}
