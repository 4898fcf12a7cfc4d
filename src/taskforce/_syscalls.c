/*
 * The system calls taskforce needs that Python's standard library lacks (Linux), so that
 * it needs neither fork from Python nor ctypes (1.5 MB of a daemon's memory):
 *   spawn             vfork+exec, the fast path of runtime/processes/spawn.py (joining the
 *                     task's cgroups and setting its limits on the way);
 *   become_subreaper  prctl(PR_SET_CHILD_SUBREAPER);
 *   set_no_new_privs  prctl(PR_SET_NO_NEW_PRIVS), for the fork path's child;
 *   inotify_*         the three inotify calls, for watch/inotify.py;
 *   trim              malloc_trim(0): give the heap freed after a load back to the system;
 *   read_usage        the CPU time and memory of many processes and their cgroups at once.
 *
 * Spawning:
 * Why C: fork() of a Python parent copies its page tables and the child then faults in
 * every page the interpreter touches before exec, which costs milliseconds per task.
 * vfork() borrows the parent's memory until exec, so nothing is copied; but the child may
 * then run only async-signal-safe C, never Python.  The one thing a plain posix_spawn()
 * cannot do is put the child's own pid into its argv and environment (Task_pid); here the
 * child writes its pid into buffers prepared by the parent before vfork.
 *
 * The child shares the parent's memory until exec, so it reports a failure by storing the
 * step and errno in the parent's variables (as glibc's posix_spawn does); by the time vfork
 * returns in the parent, the child has either exec'd or failed and exited 127.
 *
 * Where the child is to be born in a cgroup v2 group, vfork is clone3(CLONE_VM |
 * CLONE_VFORK | CLONE_INTO_CGROUP) instead, the child running on a stack of its own (as
 * posix_spawn does): a clone that shares the caller's stack cannot return through a C
 * function in both processes, and one without CLONE_VM copies the page tables and leaves
 * every page of the parent copy-on-write (about 3 ms a restart, measured).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/inotify.h>
#include <sys/vfs.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* A string of argv or envp: fixed text, or parts to be joined with the child's pid. */
typedef struct {
    char *buffer;      /* the finished string (fixed) or the space for it (templated) */
    char **parts;      /* NULL for fixed strings */
    Py_ssize_t *sizes;
    Py_ssize_t count;  /* number of parts */
    char *source;      /* where the parts are, for a word given as str (else in bytes) */
} Template;

/* core/spec.py's TASK_PID_MARKER, where a word given as str takes the child's pid. */
static const char PID_MARKER[] = "\0Task_pid\0";
#define PID_MARKER_SIZE (sizeof PID_MARKER - 1)

#define PID_DIGITS 24
/* What the child was doing when it failed (processes/spawn.py has the words for each). */
enum {
    PREPARING, REDIRECTING, CHANGING_DIRECTORY, SWITCHING_USER, NO_NEW_PRIVS, EXECUTING,
    JOINING_CGROUP, SETTING_RLIMIT, SETTING_NICE, SETTING_OOM_SCORE
};

/* An rlimit for the child; `strict`: a failure to set it fails the start (the task asked
   for it), else it is let go (the open file limit taskforce was given, put back). */
typedef struct {
    int resource;
    int strict;
    struct rlimit limit;
} ChildLimit;

/* What the child sets up before exec, beyond its stdio, directory and credentials. */
typedef struct {
    char **cgroups;  /* cgroup.procs files to join (NULL-terminated; point into Python bytes) */
    Py_ssize_t cgroup_count;
    ChildLimit *limits;
    Py_ssize_t limit_count;
    int umask;            /* -1: keep */
    int nice_set, nice;
    const char *oom_score; /* text for /proc/self/oom_score_adj, or NULL */
} Setup;

static void free_setup(Setup *setup) {
    PyMem_Free(setup->cgroups);
    PyMem_Free(setup->limits);
}

/* Read the setup tuple (cgroups, limits, umask, nice or None, oom_score_adj bytes or
   None) into C memory; the strings stay owned by `obj`. */
static int prepare_setup(PyObject *obj, Setup *setup) {
    memset(setup, 0, sizeof *setup);
    setup->umask = -1;
    PyObject *cgroups, *limits, *nice, *oom;
    if (!PyArg_ParseTuple(obj, "OOiOO", &cgroups, &limits, &setup->umask, &nice, &oom)) return -1;
    PyObject *fast = PySequence_Fast(cgroups, "cgroups must be a sequence");
    if (fast == NULL) return -1;
    setup->cgroup_count = PySequence_Fast_GET_SIZE(fast);
    setup->cgroups = PyMem_Calloc((size_t)setup->cgroup_count + 1, sizeof(char *));
    if (setup->cgroups == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < setup->cgroup_count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(item)) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_TypeError, "cgroup paths must be bytes");
            return -1;
        }
        setup->cgroups[i] = PyBytes_AS_STRING(item);
    }
    Py_DECREF(fast);
    fast = PySequence_Fast(limits, "limits must be a sequence");
    if (fast == NULL) return -1;
    setup->limit_count = PySequence_Fast_GET_SIZE(fast);
    setup->limits = PyMem_Calloc((size_t)setup->limit_count + 1, sizeof(ChildLimit));
    if (setup->limits == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < setup->limit_count; i++) {
        long long soft, hard;
        ChildLimit *l = &setup->limits[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iLLp", &l->resource, &soft,
                              &hard, &l->strict)) {
            Py_DECREF(fast);
            return -1;
        }
        l->limit.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
        l->limit.rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard;
    }
    Py_DECREF(fast);
    if (nice != Py_None) {
        setup->nice = (int)PyLong_AsLong(nice);
        if (PyErr_Occurred()) return -1;
        setup->nice_set = 1;
    }
    if (oom != Py_None) {
        if (!PyBytes_Check(oom)) {
            PyErr_SetString(PyExc_TypeError, "oom_score_adj must be bytes or None");
            return -1;
        }
        setup->oom_score = PyBytes_AS_STRING(oom);
    }
    return 0;
}

/* In the child: write `text` to the file at `path` (a cgroup.procs, oom_score_adj). */
/* clone3's arguments up to `cgroup` (CLONE_ARGS_SIZE_VER2), spelt out: older headers
   lack the struct or the flag. */
struct clone_args_v2 {
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
        tls, set_tid, set_tid_size, cgroup;
};
#define INTO_CGROUP 0x200000000ULL
#define CGROUP2_MAGIC 0x63677270

/* A directory descriptor for the cgroup v2 group whose cgroup.procs file is `procs`, or -1
   when it is not on a cgroup2 file system. */
static int v2_group(const char *procs) {
    char dir[4096];
    const char *slash = strrchr(procs, '/');
    if (slash == NULL || (size_t)(slash - procs) >= sizeof dir) return -1;
    memcpy(dir, procs, (size_t)(slash - procs));
    dir[slash - procs] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct statfs fs;
    if (fstatfs(fd, &fs) < 0 || (unsigned long)fs.f_type != CGROUP2_MAGIC) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t size = strlen(text);
    ssize_t done = write(fd, text, size);
    int saved = errno;
    close(fd);
    if (done != (ssize_t)size) {
        errno = done < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

static void free_templates(Template *items, Py_ssize_t n) {
    if (items == NULL) return;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyMem_Free(items[i].buffer);
        PyMem_Free(items[i].parts);
        PyMem_Free(items[i].sizes);
        PyMem_Free(items[i].source);
    }
    PyMem_Free(items);
}

/* A word given as str, encoded (`size` bytes at `data`), into `t`: fixed text, or the
   parts around each pid marker. 0, or -1 with an exception set. */
static int copy_word(Template *t, const char *data, Py_ssize_t size, int *templated) {
    const char *end = data + size;
    Py_ssize_t parts = 1;
    const char *at = data;
    while ((at = memmem(at, (size_t)(end - at), PID_MARKER, PID_MARKER_SIZE)) != NULL) {
        at += PID_MARKER_SIZE;
        parts++;
    }
    if (parts == 1) {
        if (memchr(data, 0, (size_t)size) != NULL) goto null_byte;
        t->buffer = PyMem_Malloc((size_t)size + 1);
        if (t->buffer == NULL) goto nomem;
        memcpy(t->buffer, data, (size_t)size);
        t->buffer[size] = '\0';
        return 0;
    }
    t->count = parts;
    t->source = PyMem_Malloc((size_t)size + 1);
    t->parts = PyMem_Calloc((size_t)parts, sizeof(char *));
    t->sizes = PyMem_Calloc((size_t)parts, sizeof(Py_ssize_t));
    if (t->source == NULL || t->parts == NULL || t->sizes == NULL) goto nomem;
    memcpy(t->source, data, (size_t)size);
    const char *from = t->source, *stop = t->source + size;
    for (Py_ssize_t k = 0; k < parts; k++) {
        const char *next = k + 1 < parts
            ? memmem(from, (size_t)(stop - from), PID_MARKER, PID_MARKER_SIZE) : stop;
        t->parts[k] = (char *)from;
        t->sizes[k] = next - from;
        if (memchr(from, 0, (size_t)t->sizes[k]) != NULL) goto null_byte;
        from = next + PID_MARKER_SIZE;
    }
    t->buffer = PyMem_Malloc((size_t)(size - (parts - 1) * (Py_ssize_t)PID_MARKER_SIZE +
                                      (parts - 1) * PID_DIGITS + 1));
    if (t->buffer == NULL) goto nomem;
    *templated = 1;
    return 0;
null_byte:
    PyErr_SetString(PyExc_ValueError, "embedded null byte in an argument or the environment");
    return -1;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* Copy a sequence of str (encoded as os.fsencode would; the pid goes where the marker is),
   bytes (fixed) or tuples of bytes (pid-templated) into C memory.  The parts of a template
   of bytes point into the Python bytes objects, kept alive by `seq`. */
static Template *prepare(PyObject *seq, Py_ssize_t *count, int *templated) {
    PyObject *fast = PySequence_Fast(seq, "argv and envp must be sequences");
    if (fast == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    Template *items = PyMem_Calloc((size_t)n + 1, sizeof(Template));
    if (items == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        Template *t = &items[i];
        if (PyUnicode_Check(item)) {
            /* ASCII (nearly every word) is its own encoding in any file system encoding:
               read in place, without a bytes object made for it. */
            PyObject *encoded = NULL;
            int copied;
#if PY_VERSION_HEX < 0x030C0000
            if (PyUnicode_READY(item) < 0) goto fail;
#endif
            if (PyUnicode_IS_ASCII(item)) {
                copied = copy_word(t, (const char *)PyUnicode_DATA(item),
                                   PyUnicode_GET_LENGTH(item), templated);
            } else {
                encoded = PyUnicode_EncodeFSDefault(item);
                if (encoded == NULL) goto fail;
                copied = copy_word(t, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded),
                                   templated);
                Py_DECREF(encoded);
            }
            if (copied < 0) goto fail;
            continue;
        }
        if (PyBytes_Check(item)) {
            Py_ssize_t size = PyBytes_GET_SIZE(item);
            if ((Py_ssize_t)strlen(PyBytes_AS_STRING(item)) != size) goto null_byte;
            t->buffer = PyMem_Malloc((size_t)size + 1);
            if (t->buffer == NULL) goto nomem;
            memcpy(t->buffer, PyBytes_AS_STRING(item), (size_t)size + 1);
            continue;
        }
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2) {
            PyErr_SetString(PyExc_TypeError,
                            "each word must be str, bytes or a tuple of 2+ bytes");
            goto fail;
        }
        Py_ssize_t parts = PyTuple_GET_SIZE(item);
        Py_ssize_t total = 0;
        t->count = parts;
        t->parts = PyMem_Calloc((size_t)parts, sizeof(char *));
        t->sizes = PyMem_Calloc((size_t)parts, sizeof(Py_ssize_t));
        if (t->parts == NULL || t->sizes == NULL) goto nomem;
        for (Py_ssize_t k = 0; k < parts; k++) {
            PyObject *part = PyTuple_GET_ITEM(item, k);
            if (!PyBytes_Check(part)) {
                PyErr_SetString(PyExc_TypeError, "template parts must be bytes");
                goto fail;
            }
            t->parts[k] = PyBytes_AS_STRING(part);
            t->sizes[k] = PyBytes_GET_SIZE(part);
            if ((Py_ssize_t)strlen(t->parts[k]) != t->sizes[k]) goto null_byte;
            total += t->sizes[k];
        }
        t->buffer = PyMem_Malloc((size_t)(total + (parts - 1) * PID_DIGITS + 1));
        if (t->buffer == NULL) goto nomem;
        *templated = 1;
    }
    *count = n;
    Py_DECREF(fast);
    return items;
null_byte:
    PyErr_SetString(PyExc_ValueError, "embedded null byte in an argument or the environment");
    goto fail;
nomem:
    PyErr_NoMemory();
fail:
    free_templates(items, n);
    Py_DECREF(fast);
    return NULL;
}

/* In the child: write the pid into every templated string.  No allocation. */
static void fill(Template *items, Py_ssize_t n, const char *pid, size_t pid_size) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Template *t = &items[i];
        if (t->parts == NULL) continue;
        char *out = t->buffer;
        for (Py_ssize_t k = 0; k < t->count; k++) {
            if (k > 0) {
                memcpy(out, pid, pid_size);
                out += pid_size;
            }
            memcpy(out, t->parts[k], (size_t)t->sizes[k]);
            out += t->sizes[k];
        }
        *out = '\0';
    }
}

/* Close every descriptor from `first` up. */
static void close_others(int first) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned int)first, ~0U, 0) == 0) return;
#endif
    long limit = sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > 65536) limit = 65536;
    for (int fd = first; fd < limit; fd++) close(fd);
}

/* Descriptors passed to the child as 3, 4... (held listening sockets): at most this many. */
#define MAX_PASSED 64

/* Everything the child needs, prepared by the parent; the child writes only its pid into
   the templates and, when it fails, the `failed_*` fields (the parent reads them once the
   child has exec'd or exited: its memory is the parent's until then). */
typedef struct {
    const char *path;
    Template *argv_t, *envp_t;
    Py_ssize_t argc, envc;
    int templated;
    char **argv, **envp;
    const char *cwd;
    long uid, gid;
    gid_t *groups;
    Py_ssize_t group_count;
    int stdio[3];
    int passed[MAX_PASSED];
    int passed_count;
    int no_new_privs;
    Setup *setup;
    int born_in;  /* the cgroup the child was born in (not to be joined), or -1 */
    volatile int failed_step, failed_errno, failed_index;
} Child;

/* In the child: become the task, or record why not and exit 127. Never returns. */
static __attribute__((noreturn)) int child_run(void *arg) {
    Child *c = arg;
    Setup *setup = c->setup;
    int step = PREPARING;
    char pid_text[PID_DIGITS];
    int at = PID_DIGITS;
    unsigned long value = (unsigned long)getpid();
    do {
        pid_text[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value && at > 0);
    if (c->templated) {
        fill(c->argv_t, c->argc, pid_text + at, (size_t)(PID_DIGITS - at));
        fill(c->envp_t, c->envc, pid_text + at, (size_t)(PID_DIGITS - at));
    }
    /* Handlers and ignored dispositions are ours, not the task's. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0) goto failed;
    step = REDIRECTING;
    /* Passed descriptors go to 3, 4...: first out of the way of that range and of
       stdio (copies above it, closed below), then into place. */
    int above = 3 + c->passed_count;
    for (int i = 0; i < c->passed_count; i++) {
        c->passed[i] = fcntl(c->passed[i], F_DUPFD_CLOEXEC, above);
        if (c->passed[i] < 0) goto failed;
    }
    for (int target = 0; target < 3; target++) {
        if (c->stdio[target] != target) {
            if (dup2(c->stdio[target], target) < 0) goto failed;
        } else {
            int flags = fcntl(target, F_GETFD);
            if (flags >= 0 && (flags & FD_CLOEXEC)) fcntl(target, F_SETFD, flags & ~FD_CLOEXEC);
        }
    }
    for (int i = 0; i < c->passed_count; i++) {
        if (dup2(c->passed[i], 3 + i) < 0) goto failed;  /* without close-on-exec */
    }
    close_others(above);
    /* Into the instance's cgroups ("0": the writer itself) before anything else of
       the task's: whatever it forks after exec is born inside. The parent is held by
       vfork until this child has exec'd or failed, so it never sees it outside. */
    step = JOINING_CGROUP;
    for (Py_ssize_t i = 0; i < setup->cgroup_count; i++) {
        c->failed_index = (int)i;
        if ((int)i != c->born_in && write_file(setup->cgroups[i], "0") < 0) goto failed;
    }
    /* Limits before the credentials change: raising a hard limit, a negative nice
       and a lower oom_score_adj need privileges the new user may lack. */
    step = SETTING_RLIMIT;
    for (Py_ssize_t i = 0; i < setup->limit_count; i++) {
        c->failed_index = (int)i;
        if (setrlimit(setup->limits[i].resource, &setup->limits[i].limit) < 0 &&
            setup->limits[i].strict)
            goto failed;
    }
    if (setup->umask >= 0) umask((mode_t)setup->umask);
    step = SETTING_NICE;
    if (setup->nice_set && setpriority(PRIO_PROCESS, 0, setup->nice) < 0) goto failed;
    step = SETTING_OOM_SCORE;
    if (setup->oom_score != NULL && write_file("/proc/self/oom_score_adj", setup->oom_score) < 0)
        goto failed;
    if (c->cwd != NULL) {
        step = CHANGING_DIRECTORY;
        if (chdir(c->cwd) < 0) goto failed;
    }
    /* Raw system calls: glibc's wrappers would signal every thread of the parent,
       whose memory this child shares until exec. */
    step = SWITCHING_USER;
    if (c->groups != NULL && syscall(SYS_setgroups, (size_t)c->group_count, c->groups) < 0)
        goto failed;
    if (c->gid >= 0 && syscall(SYS_setresgid, (gid_t)c->gid, (gid_t)c->gid, (gid_t)c->gid) < 0)
        goto failed;
    if (c->uid >= 0 && syscall(SYS_setresuid, (uid_t)c->uid, (uid_t)c->uid, (uid_t)c->uid) < 0)
        goto failed;
    /* No setuid or file capability gains from here on, for the task and its children. */
    step = NO_NEW_PRIVS;
    if (c->no_new_privs && syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
        goto failed;
    step = EXECUTING;
    execve(c->path, c->argv, c->envp);
failed:
    c->failed_errno = errno;
    c->failed_step = step;
    _exit(127);
}

#if defined(SYS_clone3) && defined(__x86_64__)
/* The child's stack, in the frame of born_into() below: the parent waits in clone3
   (CLONE_VFORK) until the child has exec'd or exited, so this part of its stack is free. */
#define CHILD_STACK (64 * 1024)

/* clone3 with the child calling fn(arg) on the stack given in `args`, then exiting with
   its return value: a C function cannot return twice when the stacks differ. */
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
        /* The child, on its own stack (the kernel put its top, 16-byte aligned, in rsp). */
        "xor %%ebp, %%ebp\n\t"
        "mov %%r9, %%rdi\n\t"
        "call *%%r8\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t" /* exit */
        "syscall\n\t"
        "hlt\n"
        "1:"
        : "+r"(nr)
        : "r"(a), "r"(size), "r"(f), "r"(x)
        : "rcx", "r11", "memory", "cc");
    return nr;
}

/* Start the child in the cgroup v2 group `group_fd`, sharing our memory until it execs.
   -1 and errno when clone3 cannot (an older kernel: the caller falls back to vfork). */
static __attribute__((noinline)) pid_t born_into(int group_fd, Child *child) {
    _Alignas(16) char stack[CHILD_STACK];
    struct clone_args_v2 args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VM | CLONE_VFORK | INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.stack = (unsigned long long)(uintptr_t)stack;
    args.stack_size = sizeof stack;
    args.cgroup = (unsigned long long)group_fd;
    long pid = clone3_call(&args, child_run, child);
    if (pid < 0) {
        errno = (int)-pid;
        return -1;
    }
    return (pid_t)pid;
}
#define HAVE_BORN_INTO 1
#endif

/* vfork, the child becoming the task: it never returns here, so the parent's frame and
   registers are as they were when vfork returns in the parent. */
static __attribute__((noinline)) pid_t vforked(Child *child) {
    pid_t pid = vfork();
    if (pid == 0) child_run(child);
    return pid;
}

static PyObject *spawn(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj, *argv_obj, *envp_obj, *cwd_obj, *groups_obj, *setup_obj;
    PyObject *passed_obj = NULL;
    Child child;
    memset(&child, 0, sizeof child);
    if (!PyArg_ParseTuple(args, "O!OOOllOiiipO!|O", &PyBytes_Type, &path_obj, &argv_obj,
                          &envp_obj, &cwd_obj, &child.uid, &child.gid, &groups_obj,
                          &child.stdio[0], &child.stdio[1], &child.stdio[2], &child.no_new_privs,
                          &PyTuple_Type, &setup_obj, &passed_obj))
        return NULL;
    if (passed_obj != NULL && passed_obj != Py_None) {
        PyObject *fast = PySequence_Fast(passed_obj, "passed descriptors must be a sequence");
        if (fast == NULL) return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
        if (n > MAX_PASSED) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "too many descriptors to pass");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            child.passed[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        }
        Py_DECREF(fast);
        if (PyErr_Occurred()) return NULL;
        child.passed_count = (int)n;
    }
    Setup setup;
    if (prepare_setup(setup_obj, &setup) < 0) {
        free_setup(&setup);
        return NULL;
    }
    child.setup = &setup;
    if (cwd_obj != Py_None) {
        if (!PyBytes_Check(cwd_obj)) {
            PyErr_SetString(PyExc_TypeError, "cwd must be bytes or None");
            free_setup(&setup);
            return NULL;
        }
        child.cwd = PyBytes_AS_STRING(cwd_obj);
    }
    child.group_count = -1;
    if (groups_obj != Py_None) {
        PyObject *fast = PySequence_Fast(groups_obj, "groups must be a sequence");
        if (fast == NULL) {
            free_setup(&setup);
            return NULL;
        }
        child.group_count = PySequence_Fast_GET_SIZE(fast);
        child.groups = PyMem_Calloc((size_t)child.group_count + 1, sizeof(gid_t));
        if (child.groups == NULL) {
            Py_DECREF(fast);
            free_setup(&setup);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t i = 0; i < child.group_count; i++) {
            child.groups[i] = (gid_t)PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        }
        Py_DECREF(fast);
        if (PyErr_Occurred()) {
            PyMem_Free(child.groups);
            free_setup(&setup);
            return NULL;
        }
    }
    child.argv_t = prepare(argv_obj, &child.argc, &child.templated);
    child.envp_t = child.argv_t ? prepare(envp_obj, &child.envc, &child.templated) : NULL;
    child.argv = child.argv_t ? PyMem_Calloc((size_t)child.argc + 1, sizeof(char *)) : NULL;
    child.envp = child.envp_t ? PyMem_Calloc((size_t)child.envc + 1, sizeof(char *)) : NULL;
    pid_t pid = -1;
    int saved = 0;
    if (child.argv == NULL || child.envp == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < child.argc; i++) child.argv[i] = child.argv_t[i].buffer;
    for (Py_ssize_t i = 0; i < child.envc; i++) child.envp[i] = child.envp_t[i].buffer;
    child.path = PyBytes_AS_STRING(path_obj);
    child.failed_step = -1;
    child.born_in = -1;

    /* A process moved into a cgroup waits for an RCU grace period (about 10 ms when the
       machine has not moved one lately): one born there (clone3 CLONE_INTO_CGROUP) does
       not. */
    int group_fd = -1;
#ifdef HAVE_BORN_INTO
    for (Py_ssize_t i = 0; i < setup.cgroup_count && group_fd < 0; i++) {
        group_fd = v2_group(setup.cgroups[i]);
        if (group_fd >= 0) child.born_in = (int)i;
    }
#endif
    /* Every signal blocked across the clone: the parent's handlers must never run in the
       child, which shares the parent's memory until exec. Without the GIL: the child
       touches only the C memory prepared above, so another thread may run Python, or
       spawn too, while this one waits for the child's exec. */
    sigset_t all, old;
    sigfillset(&all);
    Py_BEGIN_ALLOW_THREADS
    pthread_sigmask(SIG_SETMASK, &all, &old);
#ifdef HAVE_BORN_INTO
    if (group_fd >= 0) {
        pid = born_into(group_fd, &child);
        if (pid < 0) child.born_in = -1;  /* vfork, and join from the child */
    }
#endif
    if (pid < 0) pid = vforked(&child);
    saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    Py_END_ALLOW_THREADS
    if (group_fd >= 0) close(group_fd);
done:
    PyMem_Free(child.argv);
    PyMem_Free(child.envp);
    free_templates(child.argv_t, child.argc);
    free_templates(child.envp_t, child.envc);
    PyMem_Free(child.groups);
    free_setup(&setup);
    if (PyErr_Occurred()) return NULL;
    if (pid < 0) {
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("(liii)", (long)pid, (int)child.failed_step, (int)child.failed_errno,
                         (int)child.failed_index);
}

static PyObject *become_subreaper(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *set_no_new_privs(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *py_inotify_init(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

static PyObject *py_inotify_add(PyObject *self, PyObject *args) {
    (void)self;
    int fd;
    PyObject *path;
    unsigned int mask;
    if (!PyArg_ParseTuple(args, "iO&I", &fd, PyUnicode_FSConverter, &path, &mask)) return NULL;
    int wd = inotify_add_watch(fd, PyBytes_AS_STRING(path), mask);
    Py_DECREF(path);
    if (wd < 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(wd);
}

static PyObject *py_inotify_rm(PyObject *self, PyObject *args) {
    (void)self;
    int fd, wd;
    if (!PyArg_ParseTuple(args, "ii", &fd, &wd)) return NULL;
    if (inotify_rm_watch(fd, wd) < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *trim(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyBool_FromLong(malloc_trim(0));
}

/* ----- Usage readings ------------------------------------------------------------------
 *
 * read_usage: the CPU time and memory of many processes and of their instances' cgroups,
 * in one call (a status request or a /metrics scrape at 10,000 tasks reads four small
 * files per process). Most of a reading is the kernel's (open, the file's making, close:
 * 35 µs a process, measured); what this saves is Python's share, and the GIL: the files
 * are read without it, in two threads where the batch is large, while the event loop
 * runs. Files are opened relative to their directory (/proc, taskforce's directory of
 * instance cgroups in each hierarchy), which spares a lookup of its path each time.
 */

enum { USAGE_INTEGER, USAGE_CPU_STAT, USAGE_MEMBERS };

typedef struct {
    int dirfd;        /* -1: the directory could not be opened */
    const char *name; /* the file in each instance's directory */
    int kind;
} UsageFile;

typedef struct {
    long pid;                          /* 0: no process */
    const char *group;                 /* the instance's directory name, or NULL */
    int cpu, memory, members;          /* indices of UsageFile, -1: none */
    long long ticks, pages;            /* the process's; -1: unreadable */
    long long group_cpu, group_memory; /* raw (ns, µs or bytes); -1: unreadable */
    long long processes;
} UsageItem;

typedef struct {
    int proc_fd;
    const UsageFile *files;
    UsageItem *items;
    Py_ssize_t start, end;
} UsageBatch;

#define USAGE_BUFFER 4096

/* Up to size - 1 bytes of dirfd/path, NUL-terminated; -1 if it cannot be read. */
static ssize_t read_small(int dirfd, const char *path, char *buffer, size_t size) {
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return -1;
    ssize_t got = read(fd, buffer, size - 1);
    close(fd);
    if (got < 0) return -1;
    buffer[got] = '\0';
    return got;
}

/* The whole text as one integer (surrounding white space allowed), as Python's int(). */
static long long whole_integer(const char *text) {
    char *end;
    while (*text == ' ' || *text == '\t' || *text == '\n') text++;
    if (*text < '0' || *text > '9') return -1;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno) return -1;
    while (*end == ' ' || *end == '\t' || *end == '\n') end++;
    return *end ? -1 : value;
}

/* The value of cpu.stat's usage_usec line. */
static long long usage_usec(const char *text) {
    static const char key[] = "usage_usec ";
    const char *at = text;
    while (at && *at) {
        if (strncmp(at, key, sizeof key - 1) == 0) {
            char line[32];
            const char *value = at + sizeof key - 1;
            size_t length = strcspn(value, "\n");
            if (length >= sizeof line) return -1;
            memcpy(line, value, length);
            line[length] = '\0';
            return whole_integer(line);
        }
        at = strchr(at, '\n');
        if (at) at++;
    }
    return -1;
}

/* How many pids cgroup.procs lists (it may be longer than a buffer); -1: unreadable. */
static long long count_members(int dirfd, const char *path) {
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return -1;
    char buffer[USAGE_BUFFER];
    long long count = 0;
    int inside = 0;
    ssize_t got;
    while ((got = read(fd, buffer, sizeof buffer)) > 0) {
        for (ssize_t i = 0; i < got; i++) {
            int space = buffer[i] == ' ' || buffer[i] == '\n' || buffer[i] == '\t';
            if (!space && !inside) count++;
            inside = !space;
        }
    }
    close(fd);
    return got < 0 ? -1 : count;
}

/* utime + stime from /proc/PID/stat: the fields after the command name's last ')'. */
static long long stat_ticks(const char *text) {
    const char *at = strrchr(text, ')');
    if (!at || !at[1]) return -1;
    at += 2;
    long long utime = -1, stime = -1;
    for (int field = 0; field < 20; field++) {
        while (*at == ' ') at++;
        if (!*at || *at == '\n') return -1;  /* fewer fields than process_usage() needs */
        if (field == 11 || field == 12) {
            char *end;
            long long value = strtoll(at, &end, 10);
            if (end == at || (*end != ' ' && *end != '\n' && *end)) return -1;
            if (field == 11) utime = value; else stime = value;
        }
        at += strcspn(at, " \n");
    }
    return utime + stime;
}

/* The second number of /proc/PID/statm: resident pages. */
static long long statm_pages(const char *text) {
    char *end;
    strtoll(text, &end, 10);
    if (end == text || *end != ' ') return -1;
    const char *at = end + 1;
    long long value = strtoll(at, &end, 10);
    return end == at ? -1 : value;
}

static void read_items(const UsageBatch *batch) {
    char buffer[USAGE_BUFFER], path[PATH_MAX];
    for (Py_ssize_t i = batch->start; i < batch->end; i++) {
        UsageItem *item = &batch->items[i];
        item->ticks = item->pages = item->group_cpu = item->group_memory = -1;
        item->processes = -1;
        if (item->pid > 0) {
            snprintf(path, sizeof path, "%ld/stat", item->pid);
            if (read_small(batch->proc_fd, path, buffer, sizeof buffer) >= 0) {
                item->ticks = stat_ticks(buffer);
                snprintf(path, sizeof path, "%ld/statm", item->pid);
                if (item->ticks >= 0 && read_small(batch->proc_fd, path, buffer, sizeof buffer) >= 0)
                    item->pages = statm_pages(buffer);
                if (item->pages < 0) item->ticks = -1;
            }
        }
        if (!item->group) continue;
        int wanted[3] = {item->cpu, item->memory, item->members};
        long long *into[3] = {&item->group_cpu, &item->group_memory, &item->processes};
        for (int k = 0; k < 3; k++) {
            if (wanted[k] < 0) continue;
            const UsageFile *file = &batch->files[wanted[k]];
            if (file->dirfd < 0) continue;
            if ((size_t)snprintf(path, sizeof path, "%s/%s", item->group, file->name) >= sizeof path)
                continue;
            if (file->kind == USAGE_MEMBERS) {
                *into[k] = count_members(file->dirfd, path);
            } else if (read_small(file->dirfd, path, buffer, sizeof buffer) >= 0) {
                *into[k] = file->kind == USAGE_CPU_STAT ? usage_usec(buffer) : whole_integer(buffer);
            }
        }
    }
}

static void *read_items_thread(void *batch) {
    read_items(batch);
    return NULL;
}

/* Reads at most this many items in the calling thread alone: a thread costs more than
   it saves below (and two CPUs are needed for it to save anything). */
#define USAGE_ALONE 256

/* As Python computes them: ticks / SC_CLK_TCK, nanoseconds * 1e-9, microseconds * 1e-6. */
static PyObject *divided(long long value, long divisor) {
    if (value < 0) Py_RETURN_NONE;
    return PyFloat_FromDouble((double)value / (double)divisor);
}

static PyObject *scaled(long long value, double scale) {
    if (value < 0) Py_RETURN_NONE;
    return PyFloat_FromDouble((double)value * scale);
}

static PyObject *int_or_none(long long value, long long scale) {
    if (value < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(value * scale);
}

static PyObject *read_usage(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *proc, *files_arg, *items_arg;
    int threads;
    if (!PyArg_ParseTuple(args, "O&OOi", PyUnicode_FSConverter, &proc, &files_arg, &items_arg,
                          &threads))
        return NULL;
    PyObject *files_seq = NULL, *items_seq = NULL, *result = NULL;
    UsageFile *files = NULL;
    UsageItem *items = NULL;
    Py_ssize_t file_count = 0, count = 0;
    int proc_fd = -1;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);

    files_seq = PySequence_Fast(files_arg, "files must be a sequence");
    /* A tuple of its own: the items' group names are read while the GIL is released. */
    items_seq = files_seq ? PySequence_Tuple(items_arg) : NULL;
    if (!items_seq) goto done;
    file_count = PySequence_Fast_GET_SIZE(files_seq);
    count = PySequence_Fast_GET_SIZE(items_seq);
    files = PyMem_Calloc(file_count ? file_count : 1, sizeof *files);
    items = PyMem_Calloc(count ? count : 1, sizeof *items);
    if (!files || !items) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < file_count; i++) files[i].dirfd = -1;
    for (Py_ssize_t i = 0; i < file_count; i++) {
        const char *directory, *name;
        PyObject *file = PySequence_Fast_GET_ITEM(files_seq, i);
        if (!PyArg_ParseTuple(file, "ss;a file is (directory, name)", &directory, &name))
            goto done;
        files[i].name = name;
        files[i].kind = strcmp(name, "cpu.stat") == 0       ? USAGE_CPU_STAT
                        : strcmp(name, "cgroup.procs") == 0 ? USAGE_MEMBERS
                                                            : USAGE_INTEGER;
        files[i].dirfd = open(directory, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        UsageItem *item = &items[i];
        PyObject *group;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items_seq, i),
                              "lOiii;an item is (pid, group or None, cpu, memory, members)",
                              &item->pid, &group, &item->cpu, &item->memory, &item->members))
            goto done;
        if (group != Py_None && !(item->group = PyUnicode_AsUTF8(group))) goto done;
        if (item->cpu >= file_count || item->memory >= file_count || item->members >= file_count) {
            PyErr_SetString(PyExc_IndexError, "no such file");
            goto done;
        }
    }
    proc_fd = open(PyBytes_AS_STRING(proc), O_PATH | O_DIRECTORY | O_CLOEXEC);

    UsageBatch whole = {proc_fd, files, items, 0, count};
    Py_BEGIN_ALLOW_THREADS
    if (threads > 1 && count > USAGE_ALONE) {
        /* The other thread gets no signal: taskforce's handlers run in its main thread. */
        UsageBatch other = whole;
        sigset_t all, old;
        pthread_t thread;
        other.start = whole.end = count / 2;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int started = pthread_create(&thread, NULL, read_items_thread, &other) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        read_items(&whole);
        if (started) pthread_join(thread, NULL);
        else read_items(&other);
    } else {
        read_items(&whole);
    }
    Py_END_ALLOW_THREADS

    result = PyList_New(count);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        UsageItem *item = &items[i];
        PyObject *group;
        if (item->group) {
            group = Py_BuildValue(
                "(NNL)",
                scaled(item->group_cpu,
                              item->cpu >= 0 && files[item->cpu].kind == USAGE_CPU_STAT ? 1e-6 : 1e-9),
                int_or_none(item->group_memory, 1),
                item->processes < 0 ? 0LL : item->processes);
        } else {
            group = Py_NewRef(Py_None);
        }
        PyObject *entry = group ? Py_BuildValue("(NNN)", divided(item->ticks, tick),
                                                int_or_none(item->pages, page), group)
                                : NULL;
        if (!entry) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, entry);
    }
done:
    if (proc_fd >= 0) close(proc_fd);
    for (Py_ssize_t i = 0; files && i < file_count; i++)
        if (files[i].dirfd >= 0) close(files[i].dirfd);
    PyMem_Free(files);
    PyMem_Free(items);
    Py_XDECREF(files_seq);
    Py_XDECREF(items_seq);
    Py_DECREF(proc);
    return result;
}

static PyMethodDef methods[] = {
    {"inotify_init", py_inotify_init, METH_NOARGS, "inotify_init1(IN_NONBLOCK | IN_CLOEXEC) -> fd"},
    {"inotify_add_watch", py_inotify_add, METH_VARARGS, "inotify_add_watch(fd, path, mask) -> wd"},
    {"inotify_rm_watch", py_inotify_rm, METH_VARARGS, "inotify_rm_watch(fd, wd)"},
    {"trim", trim, METH_NOARGS, "malloc_trim(0): whether memory went back to the system"},
    {"become_subreaper", become_subreaper, METH_NOARGS,
     "Make orphaned descendants children of this process (prctl PR_SET_CHILD_SUBREAPER)."},
    {"set_no_new_privs", set_no_new_privs, METH_NOARGS,
     "This process and its children gain no privilege at exec (prctl PR_SET_NO_NEW_PRIVS)."},
    {"spawn", spawn, METH_VARARGS,
     "spawn(path, argv, envp, cwd, uid, gid, groups, stdin, stdout, stderr, no_new_privs,\n"
     "      (cgroup_procs_files, ((resource, soft, hard, strict), ...), umask or -1,\n"
     "       nice or None, oom_score_adj bytes or None)[, fds])\n"
     "-> (pid, failed step or -1, errno, index of the failed cgroup or limit)\n"
     "vfork and exec in a new session; str words of argv/envp are encoded as os.fsencode\n"
     "would and take the child's pid for each Task_pid marker, tuples of bytes are joined\n"
     "with it;\n"
     "fds become the child's descriptors 3, 4... in order."},
    {"read_usage", read_usage, METH_VARARGS,
     "read_usage(proc, files, items, threads) -> [(cpu_seconds, rss_bytes, group), ...]\n"
     "files: (directory, name) of cgroup files; items: (pid or 0, group directory or None,\n"
     "cpu, memory, members: indices of files or -1); group: (cpu_seconds, memory_bytes,\n"
     "processes) or None; None for what cannot be read. Read without the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "taskforce._syscalls", "system calls the standard library lacks",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__syscalls(void) { return PyModule_Create(&module); }
