/*
 * libkdthin-forkserver.so: a compiler process that forks per backend
 * instead of being started per backend (src/exec/forkserver/mod.rs).
 *
 * kdthin-ld starts a compiler (clang) with this library in LD_PRELOAD and
 * the arguments FORKSERVER_ARG FD PPID. The library replaces
 * __libc_start_main, so it gets control after the dynamic loader and every
 * static initialiser ran (LLVM's start-up cost, ~20 ms of CPU per clang)
 * but before the compiler's main. Instead of running main once, it serves
 * requests on the unix socket FD (SOCK_SEQPACKET, one message per request):
 *
 *   request   "KFS1", u32 argc, u32 envc, then cwd, argv[0..argc],
 *             env[0..envc], each NUL-terminated; SCM_RIGHTS: a job socket
 *             (SOCK_SEQPACKET), the stdout fd, the stderr fd.
 *
 * For each request it forks; the child chdirs, takes the environment and
 * the fds, and calls the compiler's real main with that argv, then exits
 * with its result, as the compiler started by exec would. On the job
 * socket the server answers
 *
 *   'P' i32 pid             + SCM_RIGHTS: a pidfd of the child
 *   'X' i32 wait status, i64 user us, i64 system us, i64 max RSS KiB
 *                           when the child was reaped
 *   'E' text                the request was not run (nothing was forked)
 *   'S' text                (from the child) its set-up failed: exit 127
 *
 * The server says 'R' i32 pid on FD when it is ready, or 'E' text when it
 * cannot serve. It ends when FD reaches EOF (its children finished first),
 * when its parent dies (PR_SET_PDEATHSIG), and, refusing the request, when
 * a file mapped into it at start (the compiler, its libraries) is no longer
 * the same file on disk: a child of the old compiler must never stand in
 * for the new one.
 *
 * Without FORKSERVER_ARG the compiler runs normally.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORKSERVER_ARG "--kdthin-forkserver"
#define MAGIC "KFS1"
/* Larger than any backend's argv plus environment; a larger request is
 * refused (kdthin-ld then runs it with exec). */
#define MAX_REQUEST (1 << 20)

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

typedef int (*main_fn)(int, char **, char **);
typedef int (*start_fn)(main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void), void *);

static main_fn real_main;
static pid_t server_pid, parent_pid;
static int control = -1;

/* Files mapped at start, as they were then. */
struct mapped {
    char *path;
    struct stat st;
};
static struct mapped *mapped;
static size_t n_mapped;

struct job {
    pid_t pid;
    int pidfd;
    int sock;
};
static struct job *jobs;
static size_t n_jobs, cap_jobs;

static void send_text(int fd, char tag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void send_text(int fd, char tag, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    buf[0] = tag;
    va_start(ap, fmt);
    int n = vsnprintf(buf + 1, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    send(fd, buf, 1 + (size_t)n, MSG_NOSIGNAL);
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Records every file mapped into us now (the executable and its shared
 * libraries). Returns 0, or -1 with why in `why`. */
static int record_mapped(char *why, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) {
        snprintf(why, len, "cannot read /proc/self/maps: %s", strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (getline(&line, &cap, f) > 0) {
        char *path = strchr(line, '/');
        if (!path)
            continue;
        path[strcspn(path, "\n")] = 0;
        if (strstr(path, " (deleted)")) {
            snprintf(why, len, "%s was replaced since it was loaded", path);
            rc = -1;
            break;
        }
        size_t i;
        for (i = 0; i < n_mapped && strcmp(mapped[i].path, path) != 0; i++)
            ;
        if (i < n_mapped)
            continue;
        struct mapped *grown = realloc(mapped, (n_mapped + 1) * sizeof *mapped);
        if (!grown) {
            snprintf(why, len, "out of memory");
            rc = -1;
            break;
        }
        mapped = grown;
        mapped[n_mapped].path = strdup(path);
        if (!mapped[n_mapped].path || stat(path, &mapped[n_mapped].st) != 0) {
            snprintf(why, len, "cannot stat %s: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        n_mapped++;
    }
    free(line);
    fclose(f);
    if (rc == 0 && n_mapped == 0) {
        snprintf(why, len, "no file mapped (/proc/self/maps)");
        rc = -1;
    }
    return rc;
}

/* The first mapped file that changed on disk since start, or NULL. */
static const char *changed_file(void)
{
    for (size_t i = 0; i < n_mapped; i++) {
        struct stat now;
        if (stat(mapped[i].path, &now) != 0 || !same_file(&now, &mapped[i].st))
            return mapped[i].path;
    }
    return NULL;
}

static void close_from(int lowest)
{
    if (syscall(SYS_close_range, (unsigned)lowest, ~0U, 0) == 0)
        return;
    struct rlimit rl;
    long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long)rl.rlim_cur : 65536;
    for (long fd = lowest; fd < max; fd++)
        close((int)fd);
}

/* In the forked child: become the compiler run for this request. */
static void run_child(int sock, int out, int err, const char *cwd, int argc, char **argv, char **envp)
{
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != server_pid)
        _exit(128 + SIGTERM);
    if (chdir(cwd) != 0) {
        send_text(sock, 'S', "cannot change to directory %s: %s", cwd, strerror(errno));
        _exit(127);
    }
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
        send_text(sock, 'S', "cannot set up stdin/stdout/stderr: %s", strerror(errno));
        _exit(127);
    }
    /* What exec mode gives the compiler: fds 0, 1 and 2 only. */
    close_from(3);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    environ = envp;
    program_invocation_name = argv[0];
    const char *slash = strrchr(argv[0], '/');
    program_invocation_short_name = (char *)(slash ? slash + 1 : argv[0]);
    exit(real_main(argc, argv, envp));
}

static void close_fds(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Reads one request from `control` and forks its child. Returns 0 when
 * the control socket reached EOF, 1 otherwise. */
static int take_request(void)
{
    static char *buf;
    if (!buf && !(buf = malloc(MAX_REQUEST)))
        _exit(70);
    int fds[3] = {-1, -1, -1};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof fds)];
    } cmsg;
    struct iovec iov = {buf, MAX_REQUEST - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cmsg, .msg_controllen = sizeof cmsg};
    ssize_t n = recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0)
        return 0;
    size_t nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int got[8];
            if (k > 8)
                k = 8;
            memcpy(got, CMSG_DATA(c), k * sizeof(int));
            for (size_t i = 0; i < k; i++) {
                if (nfds < 3)
                    fds[nfds++] = got[i];
                else
                    close(got[i]);
            }
        }
    }
    if (nfds != 3) {
        close_fds(fds, 3);
        return 1; /* nobody to answer */
    }
    int sock = fds[0];
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        send_text(sock, 'E', "request larger than %d bytes", MAX_REQUEST);
        close_fds(fds, 3);
        return 1;
    }
    buf[n] = 0;
    uint32_t argc, envc;
    if (n < 12 || memcmp(buf, MAGIC, 4) != 0) {
        send_text(sock, 'E', "malformed request");
        close_fds(fds, 3);
        return 1;
    }
    memcpy(&argc, buf + 4, 4);
    memcpy(&envc, buf + 8, 4);
    if (argc == 0 || argc > (uint32_t)n || envc > (uint32_t)n) {
        send_text(sock, 'E', "malformed request");
        close_fds(fds, 3);
        return 1;
    }
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    char **envp = calloc((size_t)envc + 1, sizeof *envp);
    if (!argv || !envp)
        _exit(70);
    char *p = buf + 12, *end = buf + n;
    const char *cwd = p;
    int ok = 1;
    for (uint32_t i = 0; ok && i < 1 + argc + envc; i++) {
        char *nul = memchr(p, 0, (size_t)(end - p));
        if (!nul) {
            ok = 0;
            break;
        }
        if (i >= 1 && i <= argc)
            argv[i - 1] = p;
        else if (i > argc)
            envp[i - 1 - argc] = p;
        p = nul + 1;
    }
    if (!ok || p != end) {
        send_text(sock, 'E', "malformed request");
        free(argv);
        free(envp);
        close_fds(fds, 3);
        return 1;
    }
    const char *changed = changed_file();
    if (changed) {
        send_text(sock, 'E', "%s changed since the fork server started", changed);
        _exit(3);
    }
    if (n_jobs == cap_jobs) {
        size_t cap = cap_jobs ? 2 * cap_jobs : 16;
        struct job *grown = realloc(jobs, cap * sizeof *jobs);
        if (!grown)
            _exit(70);
        jobs = grown;
        cap_jobs = cap;
    }
    pid_t pid = fork();
    if (pid == 0)
        run_child(sock, fds[1], fds[2], cwd, (int)argc, argv, envp);
    free(argv);
    free(envp);
    close(fds[1]);
    close(fds[2]);
    if (pid < 0) {
        send_text(sock, 'E', "fork: %s", strerror(errno));
        close(sock);
        return 1;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        send_text(sock, 'E', "pidfd_open: %s", strerror(errno));
        close(sock);
        return 1;
    }
    struct {
        char tag;
        int32_t pid;
    } __attribute__((packed)) p_msg = {'P', pid};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } out;
    memset(&out, 0, sizeof out);
    struct iovec oiov = {&p_msg, sizeof p_msg};
    struct msghdr omsg = {.msg_iov = &oiov, .msg_iovlen = 1, .msg_control = &out, .msg_controllen = sizeof out};
    struct cmsghdr *c = CMSG_FIRSTHDR(&omsg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pidfd, sizeof(int));
    if (sendmsg(sock, &omsg, MSG_NOSIGNAL) < 0) {
        /* Whoever asked is gone: so should the child be. */
        kill(pid, SIGTERM);
    }
    jobs[n_jobs++] = (struct job){pid, pidfd, sock};
    return 1;
}

/* Reaps job `i` if it exited, reports it, and forgets it. */
static int reap(size_t i)
{
    int status;
    struct rusage ru;
    pid_t r = wait4(jobs[i].pid, &status, WNOHANG, &ru);
    if (r == 0 || (r < 0 && errno == EINTR))
        return 0;
    if (r > 0) {
        struct {
            char tag;
            int32_t status;
            int64_t user_us, sys_us, maxrss_kib;
        } __attribute__((packed)) x = {
            'X',
            status,
            (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
            (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
            (int64_t)ru.ru_maxrss,
        };
        send(jobs[i].sock, &x, sizeof x, MSG_NOSIGNAL);
    }
    close(jobs[i].sock);
    close(jobs[i].pidfd);
    jobs[i] = jobs[--n_jobs];
    return 1;
}

static int serve(void)
{
    char why[512];
    int self = (int)syscall(SYS_pidfd_open, server_pid, 0);
    if (self < 0) {
        send_text(control, 'E', "pidfd_open: %s (Linux 5.3 or later needed)", strerror(errno));
        return 1;
    }
    close(self);
    if (record_mapped(why, sizeof why) != 0) {
        send_text(control, 'E', "%s", why);
        return 1;
    }
    struct {
        char tag;
        int32_t pid;
    } __attribute__((packed)) ready = {'R', server_pid};
    if (send(control, &ready, sizeof ready, MSG_NOSIGNAL) < 0)
        return 1;
    struct pollfd *pfds = NULL;
    size_t cap_pfds = 0;
    int open_control = 1;
    for (;;) {
        if (!open_control && n_jobs == 0)
            return 0;
        if (cap_pfds < n_jobs + 1) {
            cap_pfds = 2 * (n_jobs + 1);
            free(pfds);
            pfds = malloc(cap_pfds * sizeof *pfds);
            if (!pfds)
                _exit(70);
        }
        size_t n = 0;
        for (size_t i = 0; i < n_jobs; i++)
            pfds[n++] = (struct pollfd){.fd = jobs[i].pidfd, .events = POLLIN};
        if (open_control)
            pfds[n++] = (struct pollfd){.fd = control, .events = POLLIN};
        if (poll(pfds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        /* Jobs first (from the end, as reap() moves the last one). */
        for (size_t i = n_jobs; i-- > 0;)
            if (pfds[i].revents)
                reap(i);
        if (open_control && pfds[n - 1].revents) {
            if (!take_request()) {
                open_control = 0;
                close(control);
            }
        }
        if (getppid() != parent_pid)
            return 1;
    }
}

static int server_main(int argc, char **argv, char **envp)
{
    if (argc != 4 || strcmp(argv[1], FORKSERVER_ARG) != 0)
        return real_main(argc, argv, envp);
    char *end;
    long fd = strtol(argv[2], &end, 10);
    parent_pid = (pid_t)strtol(argv[3], &end, 10);
    control = (int)fd;
    server_pid = getpid();
    /* Die with kdthin-ld; it may have died already. Every send is
     * MSG_NOSIGNAL: SIGPIPE stays as the children must have it. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent_pid)
        _exit(1);
    _exit(serve());
}

int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void), void (*fini)(void),
                      void (*rtld_fini)(void), void *stack_end)
{
    start_fn real = (start_fn)dlsym(RTLD_NEXT, "__libc_start_main");
    if (!real)
        abort();
    real_main = main;
    return real(server_main, argc, argv, init, fini, rtld_fini, stack_end);
}
