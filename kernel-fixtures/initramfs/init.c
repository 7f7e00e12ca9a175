/*
 * /init of the kernel harness's initramfs (kernel-fixtures/kernel.sh).
 *
 * Prints a marker on the console, loads every module in /modules with
 * finit_module(2) (in name order), shows /proc/modules, then powers off.
 * Every line it prints starts with "KDTHIN-INIT:" so the harness can find it
 * among the kernel's messages.
 *
 * No C library: the harness builds it for every kernel architecture from
 * this x86_64 machine, where no cross libc is installed, with
 *   clang --target=<triple> -nostdlib -static -ffreestanding -fno-pic
 * so it makes its system calls itself (syscall_n below, one per
 * architecture). x86_64 has its own syscall numbers; arm64 and riscv64 use
 * the generic table (include/uapi/asm-generic/unistd.h). The flag values,
 * errno numbers and structures used here are the same on all three.
 */

typedef unsigned long ulong;
typedef unsigned long long u64;
typedef long long s64;

#if defined(__x86_64__)
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_fcntl 72
#define NR_uname 63
#define NR_sync 162
#define NR_reboot 169
#define NR_mount 165
#define NR_getdents64 217
#define NR_exit 60
#define NR_openat 257
#define NR_mkdirat 258
#define NR_mknodat 259
#define NR_ppoll 271
#define NR_dup3 292
#define NR_finit_module 313
#elif defined(__aarch64__) || (defined(__riscv) && __riscv_xlen == 64)
#define NR_dup3 24
#define NR_fcntl 25
#define NR_mknodat 33
#define NR_mkdirat 34
#define NR_mount 40
#define NR_openat 56
#define NR_close 57
#define NR_getdents64 61
#define NR_read 63
#define NR_write 64
#define NR_ppoll 73
#define NR_sync 81
#define NR_exit 93
#define NR_reboot 142
#define NR_uname 160
#define NR_finit_module 273
#else
#error "init.c: no system call table for this architecture (x86_64, aarch64, riscv64)"
#endif

/* The raw system call: the result, or -errno. */
static long syscall_n(long nr, long a, long b, long c, long d, long e)
{
#if defined(__x86_64__)
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;

	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4)
			 : "memory");
	return x0;
#else
	register long a7 __asm__("a7") = nr;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;
	register long a3 __asm__("a3") = d;
	register long a4 __asm__("a4") = e;

	__asm__ volatile("ecall"
			 : "+r"(a0)
			 : "r"(a7), "r"(a1), "r"(a2), "r"(a3), "r"(a4)
			 : "memory");
	return a0;
#endif
}

#define sys(nr, a, b, c, d, e) syscall_n(nr, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e))

#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_RDWR 2
#define O_CLOEXEC 02000000
#define F_GETFD 1
#define S_IFCHR 0020000
#define EBUSY 16
#define LINUX_REBOOT_MAGIC1 0xfee1deadL
#define LINUX_REBOOT_MAGIC2 672274793L
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321fedcL

#define MODDIR "/modules"
#define MAX_MODULES 64

struct utsname {
	char sysname[65], nodename[65], release[65], version[65], machine[65], domainname[65];
};

struct dirent64 {
	u64 d_ino;
	s64 d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* clang may call these even in freestanding code (struct copies, zeroing). */
void *memset(void *d, int c, ulong n)
{
	unsigned char *p = d;

	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, ulong n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

static ulong str_len(const char *s)
{
	ulong n = 0;

	while (s[n])
		n++;
	return n;
}

static int str_cmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (unsigned char)*a - (unsigned char)*b;
}

static void out(const char *s)
{
	ulong n = str_len(s);

	while (n > 0) {
		long w = sys(NR_write, 1, s, n, 0, 0);

		if (w <= 0)
			return;
		s += w;
		n -= (ulong)w;
	}
}

/* "ENOENT (2)" for the errors init can meet; the number otherwise. */
static void out_err(long err)
{
	static const struct {
		int n;
		const char *name;
	} names[] = {
		{ 1, "EPERM" }, { 2, "ENOENT" }, { 8, "ENOEXEC" }, { 12, "ENOMEM" }, { 13, "EACCES" },
		{ 14, "EFAULT" }, { 16, "EBUSY" }, { 17, "EEXIST" }, { 22, "EINVAL" }, { 38, "ENOSYS" },
		{ 61, "ENODATA" }, { 129, "EKEYREJECTED" },
	};
	char num[24], *p = num + sizeof(num) - 1;
	ulong i, v = (ulong)(err < 0 ? -err : err);

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (names[i].n == (int)v) {
			out(names[i].name);
			out(" ");
			break;
		}
	}
	*p = 0;
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	out("(errno ");
	out(p);
	out(")");
}

/* The kernel opens /dev/console for init (its built-in initramfs has the
 * node). Should that have failed, make the node and open it ourselves. */
static void ensure_console(void)
{
	long fd;
	int i;

	if (sys(NR_fcntl, 1, F_GETFD, 0, 0, 0) >= 0)
		return;
	sys(NR_mkdirat, AT_FDCWD, "/dev", 0755, 0, 0);
	sys(NR_mknodat, AT_FDCWD, "/dev/console", S_IFCHR | 0600, (5 << 8) | 1, 0);
	fd = sys(NR_openat, AT_FDCWD, "/dev/console", O_RDWR, 0, 0);
	if (fd < 0)
		return;
	for (i = 0; i <= 2; i++)
		if (fd != i)
			sys(NR_dup3, fd, i, 0, 0, 0);
	if (fd > 2)
		sys(NR_close, fd, 0, 0, 0, 0);
}

/* 0 when loaded. */
static int load_module(const char *name)
{
	char path[512];
	ulong n = sizeof(MODDIR);
	long fd, r;

	if (n + str_len(name) + 1 > sizeof(path))
		return 1;
	memcpy(path, MODDIR "/", n);
	memcpy(path + n, name, str_len(name) + 1);
	fd = sys(NR_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, 0);
	if (fd < 0) {
		out("KDTHIN-INIT: open ");
		out(path);
		out(": ");
		out_err(fd);
		out("\n");
		return 1;
	}
	r = sys(NR_finit_module, fd, "", 0, 0, 0);
	sys(NR_close, fd, 0, 0, 0, 0);
	out("KDTHIN-INIT: finit_module ");
	out(name);
	if (r != 0) {
		out(": FAILED: ");
		out_err(r);
		out("\n");
		return 1;
	}
	out(": ok\n");
	return 0;
}

static int is_module(const char *name)
{
	ulong n = str_len(name);

	return n > 3 && str_cmp(name + n - 3, ".ko") == 0;
}

/* 0 when every module loaded; also 1 when there is none. */
static int load_all(void)
{
	static char buf[8192];
	static char names[MAX_MODULES][256];
	const char *sorted[MAX_MODULES];
	int count = 0, failed = 0, i, j;
	long fd, n, off;

	fd = sys(NR_openat, AT_FDCWD, MODDIR, O_RDONLY | O_CLOEXEC, 0, 0);
	if (fd < 0) {
		out("KDTHIN-INIT: open " MODDIR ": ");
		out_err(fd);
		out("\n");
		return 1;
	}
	while ((n = sys(NR_getdents64, fd, buf, sizeof(buf), 0, 0)) > 0) {
		for (off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);

			off += d->d_reclen;
			if (!is_module(d->d_name) || str_len(d->d_name) >= sizeof(names[0]) || count == MAX_MODULES)
				continue;
			memcpy(names[count], d->d_name, str_len(d->d_name) + 1);
			/* Insertion sort: modules load in name order. */
			for (j = count; j > 0 && str_cmp(sorted[j - 1], names[count]) > 0; j--)
				sorted[j] = sorted[j - 1];
			sorted[j] = names[count];
			count++;
		}
	}
	sys(NR_close, fd, 0, 0, 0, 0);
	if (count == 0) {
		out("KDTHIN-INIT: no modules in " MODDIR "\n");
		return 1;
	}
	for (i = 0; i < count; i++)
		failed |= load_module(sorted[i]);
	return failed;
}

static void show_proc_modules(void)
{
	static char buf[4096];
	long r, fd, n, i, start;
	int at_line_start = 1;

	sys(NR_mkdirat, AT_FDCWD, "/proc", 0555, 0, 0);
	r = sys(NR_mount, "proc", "/proc", "proc", 0, 0);
	if (r != 0 && r != -EBUSY) {
		out("KDTHIN-INIT: mount /proc: ");
		out_err(r);
		out("\n");
		return;
	}
	fd = sys(NR_openat, AT_FDCWD, "/proc/modules", O_RDONLY | O_CLOEXEC, 0, 0);
	if (fd < 0) {
		out("KDTHIN-INIT: /proc/modules: ");
		out_err(fd);
		out("\n");
		return;
	}
	/* Each line prefixed; buf keeps one byte for the terminating NUL. */
	while ((n = sys(NR_read, fd, buf, sizeof(buf) - 1, 0, 0)) > 0) {
		for (start = 0, i = 0; i < n; i++) {
			if (buf[i] != '\n' && i + 1 < n)
				continue;
			char saved = buf[i + 1];

			buf[i + 1] = 0;
			if (at_line_start)
				out("KDTHIN-INIT: /proc/modules: ");
			out(buf + start);
			buf[i + 1] = saved;
			at_line_start = buf[i] == '\n';
			start = i + 1;
		}
	}
	if (!at_line_start)
		out("\n");
	sys(NR_close, fd, 0, 0, 0, 0);
}

/* Called by _start; never returns (init must not exit). */
__attribute__((used, noreturn)) void init_main(void)
{
	static struct utsname u;
	int failed;

	ensure_console();
	sys(NR_uname, &u, 0, 0, 0, 0);
	out("KDTHIN-INIT: hello from init, kernel ");
	out(u.release);
	out("\n");
	failed = load_all();
	show_proc_modules();
	out(failed ? "KDTHIN-INIT: MODULES FAILED\n" : "KDTHIN-INIT: all modules loaded\n");
	out("KDTHIN-INIT: powering off\n");
	sys(NR_sync, 0, 0, 0, 0, 0);
	sys(NR_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, 0, 0);
	out("KDTHIN-INIT: reboot(POWER_OFF) returned\n");
	for (;;)
		sys(NR_ppoll, 0, 0, 0, 0, 0);
}

/* The entry point: align the stack as the C ABI wants it, call init_main. */
__asm__(".text\n"
	".globl _start\n"
	"_start:\n"
#if defined(__x86_64__)
	"	xor %ebp, %ebp\n"
	"	and $-16, %rsp\n"
	"	call init_main\n"
	"	hlt\n"
#elif defined(__aarch64__)
	"	mov x29, #0\n"
	"	mov x30, #0\n"
	"	bl init_main\n"
#else
	"	mv fp, zero\n"
	"	andi sp, sp, -16\n"
	"	call init_main\n"
#endif
);
