/*
 * The floor under taskforce's start-up: N children of the benchmark's child started as
 * fast as this kernel allows, with nothing of a supervisor around the spawns.
 *
 *   spawn_floor MODE N THREADS CHILD TS_DIR [CGROUP_BASE]
 *
 * MODE
 *   vfork   vfork, setsid, stdio to /dev/null, exec;
 *   cgroup  as taskforce starts an instance: mkdir CGROUP_BASE/cI (a cgroup v2 directory
 *           of its own), open it, clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP), then
 *           the same as vfork;
 *   shared  clone3 into one cgroup made once, CGROUP_BASE/shared, for every child.
 * THREADS   spawning threads, taking the next child from one counter.
 * CHILD     bench/child.c built (it stamps CLOCK_MONOTONIC into argv[1] at its start).
 *
 * Child I runs `CHILD TS_DIR/cI`. The program waits (inotify, IN_CLOSE_WRITE in TS_DIR)
 * until every child has written its stamp, as the benchmark does, then prints one line
 * of key=value pairs: its own start time, the latest stamp, when the last spawn call
 * returned, and its own CPU time until then (all threads). Then, and on any failure or
 * SIGINT/SIGTERM/SIGHUP, it SIGKILLs every child, reaps them and removes the cgroups it
 * made. Exit status 0 when all started, 1 when not, 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16
#define WAIT_LIMIT_S 600
#define CHILD_STACK (64 * 1024)
#define INTO_CGROUP 0x200000000ULL

enum { VFORK, CGROUP, SHARED };

/* clone3's arguments up to `cgroup` (CLONE_ARGS_SIZE_VER2). */
struct clone_args_v2 {
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
        tls, set_tid, set_tid_size, cgroup;
};

static int mode, count, threads;
static const char *child_exe, *ts_dir, *cgroup_base;
static char **environment;
static int devnull = -1, shared_fd = -1;
static pid_t *pids;           /* 0: not started */
static unsigned char *made;   /* cgroup directory made for child I */
static atomic_int next_index;
static atomic_int failed;     /* a spawn failed: stop spawning */
static volatile sig_atomic_t stopping;

typedef struct {
    char path[PATH_MAX];
    char stamp[PATH_MAX];
    char *argv[3];
} Exec;

static void on_signal(int signum) {
    (void)signum;
    stopping = 1;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static __attribute__((noreturn)) int child_run(void *arg) {
    Exec *e = arg;
    /* What a supervisor's child does at least: a session of its own, stdio away from
       the supervisor's; every signal was blocked across the clone. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execve(e->argv[0], e->argv, environment);
    _exit(127);
}

#if defined(__x86_64__) && defined(SYS_clone3)
/* clone3 with the child calling fn(arg) on the stack given in `args` (a C function cannot
   return in both processes when their stacks differ). */
static long clone3_call(struct clone_args_v2 *args, int (*fn)(void *), void *arg) {
    register long nr __asm__("rax") = SYS_clone3;
    register struct clone_args_v2 *a __asm__("rdi") = args;
    register unsigned long size __asm__("rsi") = sizeof *args;
    register int (*f)(void *) __asm__("r8") = fn;
    register void *x __asm__("r9") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %%r9, %%rdi\n\t"
        "call *%%r8\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t"
        "syscall\n\t"
        "hlt\n"
        "1:"
        : "+r"(nr)
        : "r"(a), "r"(size), "r"(f), "r"(x)
        : "rcx", "r11", "memory", "cc");
    return nr;
}

static __attribute__((noinline)) pid_t born_into(int group_fd, Exec *e) {
    _Alignas(16) char stack[CHILD_STACK];
    struct clone_args_v2 args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VM | CLONE_VFORK | INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.stack = (unsigned long long)(uintptr_t)stack;
    args.stack_size = sizeof stack;
    args.cgroup = (unsigned long long)group_fd;
    long pid = clone3_call(&args, child_run, e);
    if (pid < 0) {
        errno = (int)-pid;
        return -1;
    }
    return (pid_t)pid;
}
#else
static pid_t born_into(int group_fd, Exec *e) {
    (void)group_fd;
    (void)e;
    errno = ENOSYS;
    return -1;
}
#endif

static __attribute__((noinline)) pid_t vforked(Exec *e) {
    pid_t pid = vfork();
    if (pid == 0) child_run(e);
    return pid;
}

static int spawn_one(int index) {
    Exec e;
    snprintf(e.stamp, sizeof e.stamp, "%s/c%d", ts_dir, index);
    e.argv[0] = (char *)child_exe;
    e.argv[1] = e.stamp;
    e.argv[2] = NULL;
    int group_fd = shared_fd;
    if (mode == CGROUP) {
        snprintf(e.path, sizeof e.path, "%s/c%d", cgroup_base, index);
        if (mkdir(e.path, 0755) < 0) {
            fprintf(stderr, "spawn_floor: mkdir %s: %s\n", e.path, strerror(errno));
            return -1;
        }
        made[index] = 1;
        group_fd = open(e.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (group_fd < 0) {
            fprintf(stderr, "spawn_floor: open %s: %s\n", e.path, strerror(errno));
            return -1;
        }
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = mode == VFORK ? vforked(&e) : born_into(group_fd, &e);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (mode == CGROUP) close(group_fd);
    if (pid < 0) {
        fprintf(stderr, "spawn_floor: spawning child %d: %s\n", index, strerror(saved));
        return -1;
    }
    pids[index] = pid;
    return 0;
}

static void *spawner(void *unused) {
    (void)unused;
    while (!stopping && !atomic_load(&failed)) {
        int index = atomic_fetch_add(&next_index, 1);
        if (index >= count) break;
        if (spawn_one(index) < 0) atomic_store(&failed, 1);
    }
    return NULL;
}

/* Every stamp written: the latest one (ns), or -1 if some never came (or stopped). */
static long long wait_for_stamps(int inotify_fd) {
    int seen = 0;
    long long deadline = now_ns() + WAIT_LIMIT_S * 1000000000LL;
    char buffer[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    int overflowed = 0;
    while (seen < count && !stopping && !overflowed) {
        struct pollfd p = {inotify_fd, POLLIN, 0};
        long long left = (deadline - now_ns()) / 1000000;
        if (left <= 0) break;
        int ready = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (ready < 0 && errno != EINTR) return -1;
        if (ready <= 0) continue;
        ssize_t got = read(inotify_fd, buffer, sizeof buffer);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        for (char *at = buffer; at < buffer + got;) {
            struct inotify_event *event = (struct inotify_event *)at;
            if (event->mask & IN_Q_OVERFLOW) overflowed = 1;
            else if (event->mask & IN_CLOSE_WRITE) seen++;
            at += sizeof *event + event->len;
        }
    }
    /* Read every stamp: after an overflow, poll until all are there. */
    long long latest = -1;
    for (int index = 0; index < count && !stopping; index++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/c%d", ts_dir, index);
        for (;;) {
            long long ns = 0;
            int pid = 0;
            FILE *f = fopen(path, "re");
            int fields = f ? fscanf(f, "%lld %d", &ns, &pid) : 0;
            if (f) fclose(f);
            if (fields == 2) {
                if (ns > latest) latest = ns;
                break;
            }
            if (now_ns() > deadline || stopping) return -1;
            usleep(10000);
        }
    }
    return stopping ? -1 : latest;
}

static void clean_up(void) {
    for (int i = 0; i < count; i++) {
        if (pids[i] > 0) kill(pids[i], SIGKILL);
    }
    for (int i = 0; i < count; i++) {
        if (pids[i] > 0) {
            while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) {
            }
            pids[i] = 0;
        }
    }
    char path[PATH_MAX];
    for (int i = 0; i < count; i++) {
        if (made[i]) {
            snprintf(path, sizeof path, "%s/c%d", cgroup_base, i);
            if (rmdir(path) < 0) fprintf(stderr, "spawn_floor: rmdir %s: %s\n", path, strerror(errno));
        }
    }
    if (shared_fd >= 0) {
        close(shared_fd);
        snprintf(path, sizeof path, "%s/shared", cgroup_base);
        if (rmdir(path) < 0) fprintf(stderr, "spawn_floor: rmdir %s: %s\n", path, strerror(errno));
    }
}

static double cpu_ms(void) {
    struct rusage used;
    getrusage(RUSAGE_SELF, &used);
    return (used.ru_utime.tv_sec + used.ru_stime.tv_sec) * 1e3 +
           (used.ru_utime.tv_usec + used.ru_stime.tv_usec) / 1e3;
}

int main(int argc, char **argv, char **envp) {
    long long start = now_ns();
    environment = envp;
    if (argc < 6) {
        fprintf(stderr, "usage: %s vfork|cgroup|shared N THREADS CHILD TS_DIR [CGROUP_BASE]\n",
                argv[0]);
        return 2;
    }
    const char *names[] = {"vfork", "cgroup", "shared"};
    mode = -1;
    for (int i = 0; i < 3; i++) {
        if (strcmp(argv[1], names[i]) == 0) mode = i;
    }
    count = atoi(argv[2]);
    threads = atoi(argv[3]);
    child_exe = argv[4];
    ts_dir = argv[5];
    cgroup_base = argc > 6 ? argv[6] : NULL;
    if (mode < 0 || count <= 0 || threads < 1 || threads > MAX_THREADS ||
        (mode != VFORK && cgroup_base == NULL)) {
        fprintf(stderr, "spawn_floor: bad arguments\n");
        return 2;
    }
    pids = calloc((size_t)count, sizeof *pids);
    made = calloc((size_t)count, 1);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (pids == NULL || made == NULL || devnull < 0) {
        perror("spawn_floor");
        return 1;
    }
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGHUP, &act, NULL);
    int inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (inotify_fd < 0 || inotify_add_watch(inotify_fd, ts_dir, IN_CLOSE_WRITE) < 0) {
        perror("spawn_floor: inotify");
        return 1;
    }
    int ok = 1;
    if (mode == SHARED) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/shared", cgroup_base);
        if (mkdir(path, 0755) < 0 ||
            (shared_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            fprintf(stderr, "spawn_floor: %s: %s\n", path, strerror(errno));
            ok = 0;
        }
    }
    pthread_t ids[MAX_THREADS];
    int running = 0;
    if (ok && threads == 1) {
        spawner(NULL);
    } else if (ok) {
        for (; running < threads; running++) {
            if (pthread_create(&ids[running], NULL, spawner, NULL) != 0) {
                atomic_store(&failed, 1);
                break;
            }
        }
        for (int i = 0; i < running; i++) pthread_join(ids[i], NULL);
    }
    long long spawned = now_ns();
    double cpu = cpu_ms();
    ok = ok && !atomic_load(&failed) && !stopping;
    long long latest = ok ? wait_for_stamps(inotify_fd) : -1;
    if (latest >= 0) {
        printf("mode=%s threads=%d n=%d start_ns=%lld last_stamp_ns=%lld spawned_ns=%lld "
               "cpu_ms=%.1f\n",
               names[mode], threads, count, start, latest, spawned, cpu);
        fflush(stdout);
    }
    clean_up();
    return latest >= 0 ? 0 : 1;
}
