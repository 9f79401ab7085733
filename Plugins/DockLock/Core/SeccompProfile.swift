import MetanodeWire

/// A seccomp profile as data: system calls allowed outright, rules with argument conditions or their own errno, and
/// the errno every other call fails with. `hash` names the profile in receipts and keys the compiled-BPF cache.
public struct SeccompProfile: Sendable, Equatable {
    public struct Condition: Sendable, Equatable {
        public enum Comparison: UInt32, Sendable { case notEqual = 1, less, lessOrEqual, equal, greaterOrEqual, greater, maskedEqual }
        public var argument: UInt32
        public var comparison: Comparison
        public var value: UInt64
        /// The mask's operand for `maskedEqual` (argument & value == valueTwo).
        public var valueTwo: UInt64

        public init(argument: UInt32, _ comparison: Comparison, _ value: UInt64, _ valueTwo: UInt64 = 0) {
            self.argument = argument
            self.comparison = comparison
            self.value = value
            self.valueTwo = valueTwo
        }
    }

    public struct Rule: Sendable, Equatable {
        public var syscall: String
        /// 0 allows the call; any other value fails it with that errno.
        public var errno: UInt32
        /// All must hold; at most 6.
        public var conditions: [Condition]

        public init(_ syscall: String, errno: UInt32 = 0, _ conditions: [Condition] = []) {
            self.syscall = syscall
            self.errno = errno
            self.conditions = conditions
        }
    }

    public var name: String
    public var defaultErrno: UInt32
    public var rules: [Rule]

    public init(name: String, defaultErrno: UInt32, rules: [Rule]) {
        self.name = name
        self.defaultErrno = defaultErrno
        self.rules = rules
    }

    /// BLAKE2b-256 over the profile's canonical encoding (rules in the order given).
    public var hash: [UInt8] {
        var writer = WireWriter(capacity: 8192)
        writer.string16(name)
        writer.u32(defaultErrno)
        writer.u32(UInt32(rules.count))
        for rule in rules {
            writer.string16(rule.syscall)
            writer.u32(rule.errno)
            writer.u8(UInt8(rule.conditions.count))
            for condition in rule.conditions {
                writer.u32(condition.argument)
                writer.u32(condition.comparison.rawValue)
                writer.u64(condition.value)
                writer.u64(condition.valueTwo)
            }
        }
        return WireCrypto.domainHash("metanode/docklock/seccomp-profile/v1", writer.bytes)
    }

    static let eperm: UInt32 = 1
    static let enosys: UInt32 = 38

    /// Docker's default profile for x86-64 with Docker's default capabilities, and a little stricter:
    /// - calls Docker gates on capabilities a container does not get (mount, unshare, setns, pivot_root, the new mount
    ///   API, reboot, syslog, sethostname, bpf, perf_event_open, kexec_load, the module calls, …) fail with EPERM,
    ///   as they do under Docker;
    /// - ptrace and process_vm_readv/writev fail too (Docker allows them on kernels ≥ 4.8, relying on the kernel's
    ///   same-user check); so do keyctl (the kernel keyring is not namespaced) and pidfd_getfd;
    /// - clone may not create namespaces; clone3 answers ENOSYS so libc falls back to clone, whose flags BPF can see;
    /// - personality only to the values Docker allows; socket for every family but AF_VSOCK.
    /// Unlisted calls fail with EPERM (Docker's defaultErrnoRet); calls of other architectures kill the process.
    public static let dockerDefault: SeccompProfile = {
        var rules = allowedByDefault.split(whereSeparator: \.isWhitespace).map { Rule(String($0)) }
        rules += [0, 0x8, 0x20000, 0x20008, 0xffff_ffff].map { Rule("personality", [Condition(argument: 0, .equal, $0)]) }
        // CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
        let namespaceFlags: UInt64 = 0x7E02_0000
        rules.append(Rule("clone", [Condition(argument: 0, .maskedEqual, namespaceFlags, 0)]))
        rules.append(Rule("clone3", errno: enosys))
        rules.append(Rule("socket", [Condition(argument: 0, .notEqual, 40)]))  // AF_VSOCK
        return SeccompProfile(name: "docker-default", defaultErrno: eperm, rules: rules)
    }()

    /// Docker's unconditional allow list, as it applies to x86-64, less the calls named above.
    static let allowedByDefault = """
        accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown clock_adjtime clock_getres
        clock_gettime clock_nanosleep close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
        epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve
        execveat exit exit_group faccessat faccessat2 fadvise64 fallocate fchdir fchmod fchmodat fchown fchownat fcntl
        fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstatfs fsync ftruncate futex futimesat
        get_mempolicy get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid geteuid getgid getgroups
        getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresuid getrlimit
        getrusage getsid getsockname getsockopt gettid gettimeofday getuid getxattr inotify_add_watch inotify_init
        inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents io_setup io_submit ioctl ioprio_get ioprio_set
        kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lgetxattr link linkat listen
        listxattr llistxattr lremovexattr lseek lsetxattr lstat madvise mbind membarrier memfd_create mincore mkdir
        mkdirat mknod mknodat mlock mlock2 mlockall mmap mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
        mq_timedsend mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat
        open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
        prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pwrite64 pwritev pwritev2 read readahead
        readlink readlinkat readv recvfrom recvmmsg recvmsg remap_file_pages removexattr rename renameat renameat2
        restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
        rt_sigtimedwait rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr
        sched_getparam sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
        sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop sendfile sendmmsg sendmsg sendto
        set_mempolicy set_robust_list set_thread_area set_tid_address setfsgid setfsuid setgid setgroups setitimer
        setpgid setpriority setregid setresgid setresuid setreuid setrlimit setsid setsockopt setuid setxattr shmat
        shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 socketpair splice stat statfs statx symlink
        symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
        timer_gettime timer_settime timerfd_create timerfd_gettime timerfd_settime times tkill truncate umask uname
        unlink unlinkat utime utimensat utimes vfork wait4 waitid write writev
        arch_prctl modify_ldt chroot fchmodat2 futex_waitv futex_wake futex_wait futex_requeue cachestat
        """
}
