/*
 * /init of the kernel harness's initramfs (kernel-fixtures/kernel.sh).
 *
 * Built with `cc -static -Os`. Prints a marker on the console, loads every
 * module in /modules with finit_module(2) (in name order), shows
 * /proc/modules, then powers off. Every line it prints starts with
 * "KDTHIN-INIT:" so the harness can find it among the kernel's messages.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#define MODDIR "/modules"

/* The kernel opens /dev/console for init (its built-in initramfs has the
 * node). Should that have failed, make the node and open it ourselves. */
static void ensure_console(void)
{
	int fd;

	if (fcntl(1, F_GETFD) != -1)
		return;
	mkdir("/dev", 0755);
	mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
	fd = open("/dev/console", O_RDWR);
	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

static int is_module(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 3 && strcmp(d->d_name + n - 3, ".ko") == 0;
}

/* 0 when loaded. */
static int load_module(const char *name)
{
	char path[512];
	long r;
	int fd, err;

	snprintf(path, sizeof(path), MODDIR "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		printf("KDTHIN-INIT: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	r = syscall(SYS_finit_module, fd, "", 0);
	err = errno;
	close(fd);
	if (r != 0) {
		printf("KDTHIN-INIT: finit_module %s: FAILED: %s\n", name, strerror(err));
		return 1;
	}
	printf("KDTHIN-INIT: finit_module %s: ok\n", name);
	return 0;
}

/* 0 when every module loaded; also 1 when there is none. */
static int load_all(void)
{
	struct dirent **list;
	int n, i, failed = 0;

	n = scandir(MODDIR, &list, is_module, alphasort);
	if (n <= 0) {
		printf("KDTHIN-INIT: no modules in " MODDIR "\n");
		return 1;
	}
	for (i = 0; i < n; i++) {
		failed |= load_module(list[i]->d_name);
		free(list[i]);
	}
	free(list);
	return failed;
}

static void show_proc_modules(void)
{
	char line[256];
	FILE *f;

	mkdir("/proc", 0555);
	if (mount("proc", "/proc", "proc", 0, NULL) != 0 && errno != EBUSY) {
		printf("KDTHIN-INIT: mount /proc: %s\n", strerror(errno));
		return;
	}
	f = fopen("/proc/modules", "r");
	if (!f) {
		printf("KDTHIN-INIT: /proc/modules: %s\n", strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f))
		printf("KDTHIN-INIT: /proc/modules: %s", line);
	fclose(f);
}

int main(void)
{
	struct utsname u;
	int failed;

	ensure_console();
	setvbuf(stdout, NULL, _IONBF, 0);
	uname(&u);
	printf("KDTHIN-INIT: hello from init, kernel %s\n", u.release);
	failed = load_all();
	show_proc_modules();
	printf("KDTHIN-INIT: %s\n", failed ? "MODULES FAILED" : "all modules loaded");
	printf("KDTHIN-INIT: powering off\n");
	sync();
	reboot(RB_POWER_OFF);
	printf("KDTHIN-INIT: reboot(RB_POWER_OFF): %s\n", strerror(errno));
	for (;;)
		pause();
}
