/* Calls system calls a container's seccomp profile decides on and prints one
 * "name=result" line for each probe named on the command line: "ok" when the call
 * succeeded, the errno's name when it failed, "signal N" when it killed the probe.
 * Each probe runs in a child of its own, so one probe's effects do not reach the next.
 * Built static at test time and copied into a busybox image. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sched.h>
#include <linux/sched.h>

#define X32_BIT 0x40000000L

static long clone_flags(unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return pid;
}

static long clone3_plain(void) {
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return pid;
}

static void *count(void *arg) {
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Four threads (libc creates them with clone3, or clone when it answers ENOSYS). */
static long threads(void) {
    pthread_t ids[4];
    int counted = 0;
    for (int i = 0; i < 4; i++)
        if ((errno = pthread_create(&ids[i], NULL, count, &counted)) != 0)
            return -1;
    for (int i = 0; i < 4; i++)
        pthread_join(ids[i], NULL);
    return counted == 4 ? 0 : (errno = EPROTO, -1);
}

/* A system call through the i386 entry (int 0x80), as a 32-bit program makes it. */
static long int80(long nr, long a, long b) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static long probe(const char *name) {
    char byte;
    struct iovec local = {&byte, 1}, remote = {&byte, 1};
    if (!strcmp(name, "personality_read_implies_exec"))
        return personality(READ_IMPLIES_EXEC);
    if (!strcmp(name, "personality_linux"))
        return personality(PER_LINUX);
    if (!strcmp(name, "personality_query"))
        return personality(0xffffffff);
    if (!strcmp(name, "unshare_user"))
        return unshare(CLONE_NEWUSER);
    if (!strcmp(name, "unshare_mount"))
        return unshare(CLONE_NEWNS);
    if (!strcmp(name, "clone_plain"))
        return clone_flags(0);
    if (!strcmp(name, "clone_newuser"))
        return clone_flags(CLONE_NEWUSER);
    if (!strcmp(name, "clone_newns"))
        return clone_flags(CLONE_NEWNS);
    if (!strcmp(name, "clone3"))
        return clone3_plain();
    if (!strcmp(name, "threads"))
        return threads();
    if (!strcmp(name, "keyctl"))  /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(name, "add_key"))
        return syscall(SYS_add_key, "user", "probe", "x", 1, -2);
    if (!strcmp(name, "bpf"))  /* BPF_MAP_CREATE without attributes */
        return syscall(SYS_bpf, 0, NULL, 0);
    if (!strcmp(name, "perf_event_open"))
        return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    if (!strcmp(name, "ptrace_traceme"))
        return ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    if (!strcmp(name, "process_vm_readv"))
        return process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (!strcmp(name, "init_module"))
        return syscall(SYS_init_module, NULL, 0, "");
    if (!strcmp(name, "kexec_load"))
        return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(name, "reboot"))  /* bad magic: refused with EINVAL once allowed */
        return syscall(SYS_reboot, 0, 0, 0, NULL);
    if (!strcmp(name, "swapon"))
        return syscall(SYS_swapon, "/nonexistent", 0);
    if (!strcmp(name, "settimeofday"))  /* neither time nor zone: changes nothing */
        return syscall(SYS_settimeofday, NULL, NULL);
    if (!strcmp(name, "acct"))
        return syscall(SYS_acct, "/nonexistent");
    if (!strcmp(name, "iopl"))  /* level 0: no change */
        return syscall(SYS_iopl, 0);
    if (!strcmp(name, "ioperm"))  /* turning off ports never on */
        return syscall(SYS_ioperm, 0x80, 1, 0);
    if (!strcmp(name, "open_by_handle_at"))
        return syscall(SYS_open_by_handle_at, -1, NULL, 0);
    if (!strcmp(name, "mount_tmpfs"))
        return mount("none", "/tmp", "tmpfs", 0, NULL);
    if (!strcmp(name, "umount2"))  /* /tmp is no mount point: EINVAL once allowed */
        return umount2("/tmp", 0);
    if (!strcmp(name, "pivot_root"))
        return syscall(SYS_pivot_root, ".", ".");
    if (!strcmp(name, "userfaultfd"))
        return syscall(SYS_userfaultfd, 0);
    if (!strcmp(name, "socket_vsock"))
        return socket(40, SOCK_STREAM, 0);
    if (!strcmp(name, "socket_unix"))
        return socket(AF_UNIX, SOCK_STREAM, 0);
    if (!strcmp(name, "syscall_1000"))
        return syscall(1000);
    if (!strcmp(name, "i386_getpid"))
        return int80(20, 0, 0);
    if (!strcmp(name, "i386_personality_read_implies_exec"))
        return int80(136, READ_IMPLIES_EXEC, 0);
    if (!strcmp(name, "i386_unshare_user"))
        return int80(310, CLONE_NEWUSER, 0);
    if (!strcmp(name, "i386_clone_newuser")) {
        long pid = int80(120, CLONE_NEWUSER | SIGCHLD, 0);
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return pid;
    }
    if (!strcmp(name, "i386_socket_vsock"))
        return int80(359, 40, SOCK_STREAM);
    if (!strcmp(name, "i386_kexec_load"))
        return int80(283, 0, 0);
    if (!strcmp(name, "i386_syscall_1000"))
        return int80(1000, 0, 0);
    if (!strcmp(name, "x32_getpid"))
        return syscall(X32_BIT | 39);
    if (!strcmp(name, "x32_personality_read_implies_exec"))
        return syscall(X32_BIT | 135, READ_IMPLIES_EXEC);
    if (!strcmp(name, "x32_kexec_load"))
        return syscall(X32_BIT | 528, 0, 0, NULL, 0);
    fprintf(stderr, "unknown probe %s\n", name);
    _exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int status;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            long ret = probe(argv[i]);
            printf("%s=%s\n", argv[i], ret < 0 ? strerrorname_np(errno) : "ok");
            fflush(stdout);
            _exit(0);
        }
        if (pid < 0 || waitpid(pid, &status, 0) < 0) {
            perror("fork");
            return 1;
        }
        if (WIFSIGNALED(status))
            printf("%s=signal %d\n", argv[i], WTERMSIG(status));
        else if (WEXITSTATUS(status) != 0)
            return WEXITSTATUS(status);
    }
    return 0;
}
