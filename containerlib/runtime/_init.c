/*
 * clib-init: a container's first process, from the clone to the exec of its command.
 *
 * Why this exists. The spawner clones each container's process ahead of time, in its new
 * namespaces, and hands it a plan when a request comes. When that process is a fork of
 * the spawner's Python interpreter (containerlib/runtime/_child.py), carrying out the plan
 * costs about 2 ms of copy-on-write faults and interpreter work, and the final execve(2)
 * must tear down the forked interpreter's address space. This program does the same steps
 * in the same order with the same error reports in about 1 ms, nearly all of it the
 * kernel's mounts, from a process of about a megabyte. containerlib/runtime/nativeinit.py
 * compiles it on first use; _child.py stays the fallback where no C compiler is found (or
 * CONTAINERLIB_NATIVE_INIT=0). One step is the helper's own: before the exec it puts every
 * signal back to its default, as the spawner's ignored SIGPIPE would otherwise survive it
 * (the spawner does the same for the Python child).
 *
 * Usage:
 *   clib-init FD FLAGS   FD: the inherited SOCK_SEQPACKET socket to the spawner;
 *                        FLAGS: the clone(2) flags this process was made with, in decimal.
 *   clib-init --dump     decode a plan from stdin and print it as JSON (for the tests).
 *
 * Protocol. The process first does what every container needs (parent-death signal, `lo`
 * up, `/` private), then waits for one message: the plan below, with the container's
 * stdin, stdout and stderr as SCM_RIGHTS. It may first get a *premount* message instead:
 * a plan (magic "CLPM", no descriptors) that the next container most likely has, for
 * which the process mounts the overlay rootfs and the mounts before the first cgroup
 * mount ahead of time. The plan that follows says with `premounted` whether it matches
 * that guess; if it does not, or the premount failed, the prepared mounts are detached
 * and the setup is done in full. A premount plan's seccomp filter is the early part of the
 * container's (one that allows the setup's own calls), installed last; the plan that
 * follows then brings only the rest. A failed premount is no error: the process answers
 * "P" when it has made the premount, "F" when it failed and was undone, and waits.
 * An empty message (end of file) means the spawner
 * does not need this process: it exits 0. A failure before the exec is written back as
 * "<errno>\0<step>" (the step names the operation and the path, as `mount tmpfs on
 * '/dev'`) and the process exits 125. The socket is close-on-exec, so the end of file the
 * spawner sees at the exec tells it the command started. A command that cannot be run
 * gets Docker's exit codes: 127 (not found) or 126 (not executable), with a message on
 * its stderr.
 *
 * Plan format, version 6 (nativeinit.encode writes it; keep the two in step). Integers
 * are little-endian u32 or u64 (i32 for oom_score_adj); nothing is aligned.
 *   str      u32 n >= 1, then n bytes whose last is the only NUL (so the C side uses the
 *            bytes in place, without a copy)
 *   ostr     like str, or n = 0 for None
 *   bool     u32 0 or 1
 *   opt T    bool present, then a T that is 0 when absent
 *   list T   u32 count, then count T
 * In this order:
 *   u32 magic 0x50494c43 ("CLIP"; "CLPM" 0x4d504c43 for a premount), u32 version 6,
 *   str rootfs, str rw_dir, list str lowerdirs (1..500), bool readonly_root,
 *   u64 rootfs_propagation, bool new_cgroupns,
 *   list (u64 flag, str path) joins (at most 8; CLONE_NEWNET, CLONE_NEWUTS or
 *   CLONE_NEWIPC), bool join_fds,
 *   list mount (str target, ostr source, ostr fstype, u64 flags, ostr data,
 *               opt u64 remount_flags, u64 propagation, bool is_file, bool cgroup),
 *   list device (str path, u32 mode, u32 major, u32 minor, u32 uid, u32 gid),
 *   list (str target, str name) dev_symlinks, list str masked_paths,
 *   list str readonly_paths, ostr hostname, ostr domainname,
 *   list (str key, str value) sysctl, u32 uid, u32 gid, list u32 additional_gids,
 *   opt u32 umask, list (u32 resource, u64 soft, u64 hard) rlimits,
 *   bool no_new_privileges, opt u64 cap_bounding, u64 cap_effective,
 *   u64 cap_permitted, u64 cap_inheritable, list u32 cap_ambient,
 *   opt i32 oom_score_adj, str cwd, list str args (>= 1), list str env (as execve(2)
 *   gets it: NAME=VALUE, one entry a name), list str procs_files, bool have_cgroup2,
 *   u32 last_cap (<= 63), bool premounted, u32 seccomp_flags, bytes seccomp (u32 n, a
 *   multiple of 8 up to 32768, then n bytes: the BPF program, n = 0 for none),
 *   ostr user (a "user[:group]" to look up in the container's /etc/passwd and /etc/group;
 *   it then replaces uid and gid), bool set_home, bool userns, bool setgroups,
 *   bool rootfs_fd, u64 join_flags (for --exec: the CLONE_NEW* namespaces to join; 0
 *   otherwise), bool bind_root, ostr exec_fifo, bool terminal, u32 console_width,
 *   u32 console_height, bool init, bool pause_for_hooks,
 *   list hook create_container_hooks (hook: str path, list str argv (empty: the path
 *   alone), list str env, u32 timeout in seconds, 0 for none), ostr create_state,
 *   list hook start_container_hooks, ostr start_state, u32 magic again.
 * With pause_for_hooks, the process answers "H" once its namespaces, cgroup and mounts
 * are made (before the createContainer hooks and pivot_root), and waits for "G": the
 * runtime runs its prestart and createRuntime hooks meanwhile, in its own namespaces.
 * The createContainer hooks run next, in the container's namespaces before pivot_root
 * (their path is the host's); the startContainer hooks once `start` has opened the exec
 * FIFO, after pivot_root and with the command's credentials, just before the exec. Each
 * is forked and exec'd with its argv and env as given, the state (create_state or
 * start_state, JSON) on its stdin and its stdout and stderr read back (the start of
 * them goes into a failure's report); it is killed at its timeout. A hook that fails
 * fails the setup; a startContainer hook's failure is written to the exec FIFO, which
 * `start` reads ("0" alone means the command runs).
 * With init, this process stays the container's PID 1 as a small reaper (`docker run
 * --init`): it forks the command, passes on every signal it gets, reaps every process
 * that ends, and exits with the command's status (128 + N if signal N killed it). It is
 * made non-dumpable first, so nothing in the container can read it or its executable
 * through /proc.
 * With terminal, a descriptor after the others (after the rootfs, if rootfs_fd) is a
 * socket connected to the caller's console socket: the process opens a new pseudo
 * terminal in the container's own devpts, gets its other end by ioctl (TIOCGPTPEER, no
 * path to follow), sends the master end on that socket (SCM_RIGHTS, as runc does for
 * conmon and containerd), and makes the other end its controlling terminal and stdio.
 * With joins, the process joins those namespaces (setns(2)) instead of having its own
 * (they are not in its clone flags), first thing in the setup: a sysfs or mqueue mounted
 * later belongs to the namespace the process is in then. With join_fds, a descriptor of
 * each came with the plan, after the rootfs's and before the console's, opened by the
 * spawner (a warm process cloned earlier would not see a namespace bind-mounted since);
 * without, the process opens the paths itself. A premount is never used for such a plan.
 * With bind_root, the rootfs is the directory lowerdirs[0] itself (an OCI bundle's, as
 * runc uses it: bound on itself, no overlay; with userns, the rootfs descriptor, if one
 * came, is an id-mapped mount of it to attach there instead). With exec_fifo (the OCI
 * create/start split), the process answers "C" once the setup is done, then opens that
 * FIFO for writing, which blocks until `start` opens it for reading, writes a byte and
 * goes on to the exec. rootfs_propagation is given to `/` after pivot_root, which
 * refuses a shared new root.
 * `clib-init FD FLAGS --detached` starts a process that does not die with its parent (a
 * container created by the OCI command line outlives it).
 * With userns, the process is in a new user namespace whose maps the spawner has written:
 * it becomes that namespace's root before it mounts anything, bind-mounts the host's
 * device nodes (mknod is refused in a user namespace), and skips setgroups(2) where the
 * namespace denies it (!setgroups) and no groups are asked for. Its rootfs either came
 * with the plan (rootfs_fd: a detached overlay mount, the fourth descriptor, which root's
 * spawner made over id-mapped layers) to be attached, or it mounts the overlay itself
 * with `userxattr` (a non-root user's), with the new mount API and through descriptors
 * opened before it became the namespace's root, which may not search the host
 * directories on the way.
 * A plan is at most 1 MiB, and every list has a bound (the MAX_* below). Anything else,
 * including bytes after the final magic, is refused with EBADMSG.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPEN_HOW 1
#endif
#endif
#ifndef HAVE_OPEN_HOW
struct open_how {
	uint64_t flags;
	uint64_t mode;
	uint64_t resolve;
};
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_IN_ROOT 0x10
#endif
/* Both are the same on every architecture (the generic syscall table). */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define PLAN_MAGIC 0x50494c43u
#define PREMOUNT_MAGIC 0x4d504c43u
#define EXEC_MAGIC 0x58494c43u
#define PLAN_VERSION 6u
#define MAX_SECCOMP (4096u * 8u) /* BPF_MAXINSNS instructions */
#define MAX_PLAN (1u << 20)
#define MAX_LOWERDIRS 500 /* overlayfs stacks at most 500 layers */
#define MAX_MOUNTS 1024
#define MAX_DEVICES 1024
#define MAX_PATHS 1024 /* symlinks, masked, read-only paths, sysctls, cgroups */
#define MAX_GIDS 65536 /* NGROUPS_MAX */
#define MAX_RLIMITS 64
#define MAX_AMBIENT 64
#define MAX_ARGS 32768
#define MAX_ENV 32768
#define MAX_HOOKS 64
#define MAX_JOINS 8
#define MAX_HOOK_STRS 8192 /* the argv and env entries of all hooks, with their NULLs */
#define SETUP_FAILED 125
#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND 127
#define REPORT_MAX 4096 /* the spawner reads the report with recv(4096) */

static const char default_path[] =
	"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct mount_step {
	const char *target, *source, *fstype, *data;
	uint64_t flags;
	bool has_remount;
	uint64_t remount_flags;
	uint64_t propagation;
	bool is_file, cgroup;
};

struct device_step {
	const char *path;
	uint32_t mode, major, minor, uid, gid;
};

struct pair {
	const char *first, *second;
};

struct hook_step {
	const char *path;
	char **argv, **env; /* NULL-terminated, in hook_strs */
	uint32_t timeout;
};

struct join_step {
	uint64_t flag; /* CLONE_NEWNET, CLONE_NEWUTS or CLONE_NEWIPC */
	const char *path;
};

struct rlimit_step {
	uint32_t resource;
	uint64_t soft, hard;
};

struct plan {
	const char *rootfs, *rw_dir;
	const char *lowerdirs[MAX_LOWERDIRS];
	uint32_t n_lowerdirs;
	bool readonly_root;
	uint64_t rootfs_propagation;
	bool new_cgroupns;
	struct join_step joins[MAX_JOINS];
	uint32_t n_joins;
	bool join_fds;
	struct mount_step mounts[MAX_MOUNTS];
	uint32_t n_mounts;
	struct device_step devices[MAX_DEVICES];
	uint32_t n_devices;
	struct pair dev_symlinks[MAX_PATHS];
	uint32_t n_dev_symlinks;
	const char *masked_paths[MAX_PATHS];
	uint32_t n_masked_paths;
	const char *readonly_paths[MAX_PATHS];
	uint32_t n_readonly_paths;
	const char *hostname, *domainname;
	uint32_t hostname_len, domainname_len;
	struct pair sysctl[MAX_PATHS];
	uint32_t n_sysctl;
	uint32_t uid, gid;
	gid_t additional_gids[MAX_GIDS];
	uint32_t n_additional_gids;
	bool has_umask;
	uint32_t umask;
	struct rlimit_step rlimits[MAX_RLIMITS];
	uint32_t n_rlimits;
	bool no_new_privileges;
	bool has_cap_bounding;
	uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable;
	uint32_t cap_ambient[MAX_AMBIENT];
	uint32_t n_cap_ambient;
	bool has_oom_score_adj;
	int32_t oom_score_adj;
	const char *cwd;
	char *args[MAX_ARGS + 1]; /* NULL-terminated for execve */
	uint32_t n_args;
	char *env[MAX_ENV + 1];
	uint32_t n_env;
	const char *procs_files[MAX_PATHS];
	uint32_t n_procs_files;
	bool have_cgroup2;
	uint32_t last_cap;
	bool premounted;
	uint32_t seccomp_flags;
	const unsigned char *seccomp;
	uint32_t seccomp_len;
	const char *user;
	bool set_home;
	bool userns, setgroups, rootfs_fd;
	uint64_t join_flags;
	bool bind_root;
	const char *exec_fifo;
	bool terminal;
	uint32_t console_width, console_height;
	bool init;
	bool pause_for_hooks;
	struct hook_step create_hooks[MAX_HOOKS];
	uint32_t n_create_hooks;
	const char *create_state;
	uint32_t create_state_len;
	struct hook_step start_hooks[MAX_HOOKS];
	uint32_t n_start_hooks;
	const char *start_state;
	uint32_t start_state_len;
};

/* Static, so that nothing is allocated: pages the kernel never touches cost nothing. */
static struct plan plan;
static unsigned char plan_buf[MAX_PLAN];
/* The hooks' argv and env arrays point here; hook_strs_used counts what a plan took. */
static char *hook_strs[MAX_HOOK_STRS];
static uint32_t hook_strs_used;
/* Not to die with the parent (see --detached above). */
static bool detached;
/* The exec FIFO, opened (O_PATH) before the rootfs hides its path, or -1. */
static int exec_fifo_fd = -1;
/* The descriptors that came after the stdio ones, in order: the rootfs (rootfs_fd above)
 * or, for `--exec`, a pidfd of the container's first process; the namespaces to join
 * (join_fds above); then the console socket (terminal above). take_extra_fds() sorts
 * them out once the plan says which came. */
#define MAX_EXTRA_FDS (2 + MAX_JOINS)
static int extra_fds[MAX_EXTRA_FDS] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
static int received_rootfs = -1;
static int received_joins[MAX_JOINS];
static int received_console = -1;
/* In a user namespace: the sources of bind mounts, opened before the process became the
 * namespace's root (which may not search the host directories that lead to them). */
static int bind_sources[MAX_MOUNTS];

/* -- reporting ----------------------------------------------------------------------- */

/* The spawner's socket; -1 in --dump mode, where reports go to stderr. */
static int report_fd = -1;

/* While a premount is made, a failure undoes it instead of ending the process. */
static jmp_buf *premount_failed;

/* Report "errno NUL step" to the spawner and exit; the spawner raises it as an error. */
static _Noreturn __attribute__((format(printf, 2, 3))) void fail(int err, const char *fmt, ...)
{
	if (premount_failed)
		longjmp(*premount_failed, 1);
	char msg[REPORT_MAX];
	size_t head = (size_t)snprintf(msg, sizeof msg, "%d", err) + 1; /* keeps the NUL */
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg + head, sizeof msg - head, fmt, ap);
	va_end(ap);
	/* A step text too long for one report is cut, not lost. */
	size_t text = n < 0 ? 0 : (size_t)n;
	if (text >= sizeof msg - head)
		text = sizeof msg - head - 1;
	if (report_fd >= 0) {
		ssize_t ignored = write(report_fd, msg, head + text);
		(void)ignored;
	} else {
		fprintf(stderr, "clib-init: %s: %s\n", msg + head, strerror(err));
	}
	_exit(SETUP_FAILED);
}

/* -- reading the plan ---------------------------------------------------------------- */

struct reader {
	const unsigned char *p, *end;
};

#define bad_plan(...) fail(EBADMSG, "read the plan: " __VA_ARGS__)

static void take(struct reader *r, void *out, size_t n, const char *what)
{
	if ((size_t)(r->end - r->p) < n)
		bad_plan("%s: truncated", what);
	memcpy(out, r->p, n);
	r->p += n;
}

static uint32_t read_u32(struct reader *r, const char *what)
{
	uint32_t v;
	take(r, &v, sizeof v, what);
	return le32toh(v);
}

static uint64_t read_u64(struct reader *r, const char *what)
{
	uint64_t v;
	take(r, &v, sizeof v, what);
	return le64toh(v);
}

static bool read_bool(struct reader *r, const char *what)
{
	uint32_t v = read_u32(r, what);
	if (v > 1)
		bad_plan("%s: %u is not a boolean", what, v);
	return v;
}

static uint32_t read_count(struct reader *r, const char *what, uint32_t max)
{
	uint32_t n = read_u32(r, what);
	if (n > max)
		bad_plan("%s: %u entries, at most %u", what, n, max);
	return n;
}

/* A string in place: its bytes end with the only NUL. NULL for an absent ostr. */
static char *read_str_len(struct reader *r, const char *what, bool optional, uint32_t *len)
{
	uint32_t n = read_u32(r, what);
	if (n == 0) {
		if (!optional)
			bad_plan("%s: missing", what);
		*len = 0;
		return NULL;
	}
	if ((size_t)(r->end - r->p) < n)
		bad_plan("%s: truncated", what);
	char *s = (char *)r->p;
	if (memchr(s, '\0', n) != s + n - 1)
		bad_plan("%s: not one NUL-terminated string", what);
	r->p += n;
	*len = n - 1;
	return s;
}

static char *read_str(struct reader *r, const char *what)
{
	uint32_t len;
	return read_str_len(r, what, false, &len);
}

static char *read_ostr(struct reader *r, const char *what)
{
	uint32_t len;
	return read_str_len(r, what, true, &len);
}

static uint32_t read_strs(struct reader *r, const char *what, const char **out, uint32_t max)
{
	uint32_t n = read_count(r, what, max);
	for (uint32_t i = 0; i < n; i++)
		out[i] = read_str(r, what);
	return n;
}

static void read_mount(struct reader *r, struct mount_step *m)
{
	m->target = read_str(r, "mount target");
	m->source = read_ostr(r, "mount source");
	m->fstype = read_ostr(r, "mount fstype");
	m->flags = read_u64(r, "mount flags");
	m->data = read_ostr(r, "mount data");
	m->has_remount = read_bool(r, "mount remount_flags");
	m->remount_flags = read_u64(r, "mount remount_flags");
	m->propagation = read_u64(r, "mount propagation");
	m->is_file = read_bool(r, "mount is_file");
	m->cgroup = read_bool(r, "mount cgroup");
}

static void read_device(struct reader *r, struct device_step *d)
{
	d->path = read_str(r, "device path");
	d->mode = read_u32(r, "device mode");
	d->major = read_u32(r, "device major");
	d->minor = read_u32(r, "device minor");
	d->uid = read_u32(r, "device uid");
	d->gid = read_u32(r, "device gid");
}

static uint32_t read_pairs(struct reader *r, const char *what, struct pair *out, uint32_t max)
{
	uint32_t n = read_count(r, what, max);
	for (uint32_t i = 0; i < n; i++) {
		out[i].first = read_str(r, what);
		out[i].second = read_str(r, what);
	}
	return n;
}

static void read_mounts_and_devices(struct reader *r, struct plan *p)
{
	p->n_mounts = read_count(r, "mounts", MAX_MOUNTS);
	for (uint32_t i = 0; i < p->n_mounts; i++)
		read_mount(r, &p->mounts[i]);
	p->n_devices = read_count(r, "devices", MAX_DEVICES);
	for (uint32_t i = 0; i < p->n_devices; i++)
		read_device(r, &p->devices[i]);
	p->n_dev_symlinks = read_pairs(r, "dev_symlinks", p->dev_symlinks, MAX_PATHS);
}

static void read_process(struct reader *r, struct plan *p)
{
	p->uid = read_u32(r, "uid");
	p->gid = read_u32(r, "gid");
	p->n_additional_gids = read_count(r, "additional_gids", MAX_GIDS);
	for (uint32_t i = 0; i < p->n_additional_gids; i++)
		p->additional_gids[i] = read_u32(r, "additional_gids");
	p->has_umask = read_bool(r, "umask");
	p->umask = read_u32(r, "umask");
	p->n_rlimits = read_count(r, "rlimits", MAX_RLIMITS);
	for (uint32_t i = 0; i < p->n_rlimits; i++) {
		p->rlimits[i].resource = read_u32(r, "rlimit resource");
		p->rlimits[i].soft = read_u64(r, "rlimit soft");
		p->rlimits[i].hard = read_u64(r, "rlimit hard");
	}
	p->no_new_privileges = read_bool(r, "no_new_privileges");
	p->has_cap_bounding = read_bool(r, "cap_bounding");
	p->cap_bounding = read_u64(r, "cap_bounding");
	p->cap_effective = read_u64(r, "cap_effective");
	p->cap_permitted = read_u64(r, "cap_permitted");
	p->cap_inheritable = read_u64(r, "cap_inheritable");
	p->n_cap_ambient = read_count(r, "cap_ambient", MAX_AMBIENT);
	for (uint32_t i = 0; i < p->n_cap_ambient; i++)
		p->cap_ambient[i] = read_u32(r, "cap_ambient");
	p->has_oom_score_adj = read_bool(r, "oom_score_adj");
	p->oom_score_adj = (int32_t)read_u32(r, "oom_score_adj");
	p->cwd = read_str(r, "cwd");
	p->n_args = read_strs(r, "args", (const char **)p->args, MAX_ARGS);
	if (p->n_args == 0)
		bad_plan("args: empty");
	p->args[p->n_args] = NULL;
	p->n_env = read_strs(r, "env", (const char **)p->env, MAX_ENV);
	p->env[p->n_env] = NULL;
}

/* A list of NULL-terminated string arrays from hook_strs; with `fallback` and no entry,
 * the array is that string alone. */
static char **read_hook_strs(struct reader *r, const char *what, const char *fallback)
{
	uint32_t n = read_count(r, what, MAX_HOOK_STRS);
	uint32_t need = n + (n == 0 && fallback) + 1;
	if (need > MAX_HOOK_STRS - hook_strs_used)
		bad_plan("%s: more than %u strings in all the hooks", what, MAX_HOOK_STRS);
	char **out = hook_strs + hook_strs_used;
	for (uint32_t i = 0; i < n; i++)
		out[i] = read_str(r, what);
	if (n == 0 && fallback)
		out[n++] = (char *)fallback;
	out[n] = NULL;
	hook_strs_used += need;
	return out;
}

static uint32_t read_hooks(struct reader *r, const char *what, struct hook_step *out)
{
	uint32_t n = read_count(r, what, MAX_HOOKS);
	for (uint32_t i = 0; i < n; i++) {
		out[i].path = read_str(r, what);
		out[i].argv = read_hook_strs(r, what, out[i].path);
		out[i].env = read_hook_strs(r, what, NULL);
		out[i].timeout = read_u32(r, what);
	}
	return n;
}

/* Decode the plan in buf (which must stay alive: the strings point into it). */
static void parse_plan(const unsigned char *buf, size_t len, struct plan *p, uint32_t magic)
{
	struct reader r = {buf, buf + len};
	if (read_u32(&r, "magic") != magic)
		bad_plan("not a plan (bad magic)");
	uint32_t version = read_u32(&r, "version");
	if (version != PLAN_VERSION)
		bad_plan("version %u, this helper reads version %u", version, PLAN_VERSION);
	p->rootfs = read_str(&r, "rootfs");
	p->rw_dir = read_str(&r, "rw_dir");
	p->n_lowerdirs = read_strs(&r, "lowerdirs", p->lowerdirs, MAX_LOWERDIRS);
	if (p->n_lowerdirs == 0)
		bad_plan("lowerdirs: empty");
	p->readonly_root = read_bool(&r, "readonly_root");
	p->rootfs_propagation = read_u64(&r, "rootfs_propagation");
	p->new_cgroupns = read_bool(&r, "new_cgroupns");
	p->n_joins = read_count(&r, "namespace_paths", MAX_JOINS);
	for (uint32_t i = 0; i < p->n_joins; i++) {
		uint64_t flag = read_u64(&r, "namespace_paths.flag");
		if (flag != CLONE_NEWNET && flag != CLONE_NEWUTS && flag != CLONE_NEWIPC)
			bad_plan("namespace_paths.flag: %#llx is not a namespace to join",
				 (unsigned long long)flag);
		p->joins[i].flag = flag;
		p->joins[i].path = read_str(&r, "namespace_paths.path");
	}
	p->join_fds = read_bool(&r, "join_fds");
	read_mounts_and_devices(&r, p);
	p->n_masked_paths = read_strs(&r, "masked_paths", p->masked_paths, MAX_PATHS);
	p->n_readonly_paths = read_strs(&r, "readonly_paths", p->readonly_paths, MAX_PATHS);
	p->hostname = read_str_len(&r, "hostname", true, &p->hostname_len);
	p->domainname = read_str_len(&r, "domainname", true, &p->domainname_len);
	p->n_sysctl = read_pairs(&r, "sysctl", p->sysctl, MAX_PATHS);
	read_process(&r, p);
	p->n_procs_files = read_strs(&r, "procs_files", p->procs_files, MAX_PATHS);
	p->have_cgroup2 = read_bool(&r, "have_cgroup2");
	p->last_cap = read_u32(&r, "last_cap");
	if (p->last_cap > 63)
		bad_plan("last_cap: %u is past 63", p->last_cap);
	p->premounted = read_bool(&r, "premounted");
	p->seccomp_flags = read_u32(&r, "seccomp_flags");
	p->seccomp_len = read_u32(&r, "seccomp");
	if (p->seccomp_len % sizeof(struct sock_filter) || p->seccomp_len > MAX_SECCOMP)
		bad_plan("seccomp: %u bytes", p->seccomp_len);
	if ((size_t)(r.end - r.p) < p->seccomp_len)
		bad_plan("seccomp: truncated");
	p->seccomp = r.p;
	r.p += p->seccomp_len;
	p->user = read_ostr(&r, "user");
	p->set_home = read_bool(&r, "set_home");
	p->userns = read_bool(&r, "userns");
	p->setgroups = read_bool(&r, "setgroups");
	p->rootfs_fd = read_bool(&r, "rootfs_fd");
	p->join_flags = read_u64(&r, "join_flags");
	p->bind_root = read_bool(&r, "bind_root");
	p->exec_fifo = read_ostr(&r, "exec_fifo");
	p->terminal = read_bool(&r, "terminal");
	p->console_width = read_u32(&r, "console_width");
	p->console_height = read_u32(&r, "console_height");
	p->init = read_bool(&r, "init");
	p->pause_for_hooks = read_bool(&r, "pause_for_hooks");
	hook_strs_used = 0;
	p->n_create_hooks = read_hooks(&r, "create_container_hooks", p->create_hooks);
	p->create_state = read_str_len(&r, "create_state", true, &p->create_state_len);
	p->n_start_hooks = read_hooks(&r, "start_container_hooks", p->start_hooks);
	p->start_state = read_str_len(&r, "start_state", true, &p->start_state_len);
	if (read_u32(&r, "final magic") != magic)
		bad_plan("bad final magic");
	if (r.p != r.end)
		bad_plan("%zu bytes after the end", (size_t)(r.end - r.p));
}

/* -- small syscall helpers ------------------------------------------------------------ */

static int openat2_in(int dirfd, const char *path, int flags, uint64_t resolve)
{
	struct open_how how = {.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC), .resolve = resolve};
	int fd;
	/* openat2 answers EAGAIN when a rename or a mount anywhere on the host (the mount
	 * lock is global: another container's teardown will do) raced a ".." lookup. Try
	 * again at once, then with short pauses: up to about 50 ms in all. */
	for (int tries = 0; tries < 512; tries++) {
		fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
		if (fd >= 0 || errno != EAGAIN)
			break;
		if (tries >= 16) {
			struct timespec pause = {0, 100000};
			nanosleep(&pause, NULL);
		}
	}
	return fd;
}

/* Open a path inside the container's root: no symlink or ".." can lead out of it. */
static int open_beneath(int rootfd, const char *path, int flags)
{
	return openat2_in(rootfd, path, O_PATH | flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

static const char *relative(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

/* Write a short value to a kernel file, as `echo -n value > path`. */
static int write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, data, len);
	int err = errno;
	close(fd);
	errno = err;
	return n < 0 ? -1 : 0;
}

static void fd_path(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/* -- the warm part: done before the plan comes ---------------------------------------- */

static void bring_up_loopback(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		fail(errno, "bring up 'lo'");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		fail(errno, "bring up 'lo'");
	close(s);
}

static void warm_up(int sock, unsigned long clone_flags)
{
	/* Die with the spawner. The cloned child set it before the exec, which keeps it;
	 * set here too, so the helper does not depend on its caller for it. */
	if (!detached && prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L) < 0)
		fail(errno, "set the parent-death signal");
	/* Nothing else of the spawner's (other containers' channels) stays open in a
	 * process that may wait a long time for its plan. */
	if ((sock > 3 && syscall(SYS_close_range, 3u, (unsigned)sock - 1, 0u) < 0) ||
	    syscall(SYS_close_range, (unsigned)sock + 1, ~0u, 0u) < 0)
		fail(errno, "close inherited descriptors");
	/* A new network namespace has only `lo`, and it is down. */
	if (clone_flags & CLONE_NEWNET)
		bring_up_loopback();
	/* No mount made here may reach the host's mount namespace, nor one of the host's
	 * reach the container later. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		fail(errno, "make '/' private");
}

static bool is_premount(size_t len)
{
	uint32_t magic;
	if (len < sizeof magic)
		return false;
	memcpy(&magic, plan_buf, sizeof magic);
	return le32toh(magic) == PREMOUNT_MAGIC;
}

/* Wait for the plan and the three stdio descriptors (none with a premount message);
 * returns the message's length. */
static size_t receive_plan(int sock, int stdio[3])
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE((3 + MAX_EXTRA_FDS) * sizeof(int))];
	} control;
	struct iovec iov = {plan_buf, sizeof plan_buf};
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof control.buf,
	};
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fail(errno, "receive the plan");
	if (n == 0)
		_exit(0); /* not needed after all */
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		fail(EMSGSIZE, "receive the plan");
	int count = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfds; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (count < 3)
				stdio[count++] = fd;
			else if (count < 3 + MAX_EXTRA_FDS)
				extra_fds[count++ - 3] = fd;
			else
				close(fd);
		}
	}
	if (count < 3 && !(count == 0 && is_premount((size_t)n)))
		fail(EBADMSG, "set up stdio");
	return (size_t)n;
}

static void set_up_stdio(const int stdio[3])
{
	int fds[3];
	/* Move any received descriptor out of 0..2 first, so one dup2 cannot close
	 * another's source. */
	for (int i = 0; i < 3; i++) {
		fds[i] = stdio[i];
		if (fds[i] < 3 && (fds[i] = fcntl(stdio[i], F_DUPFD_CLOEXEC, 3)) < 0)
			fail(errno, "set up stdio");
	}
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			fail(errno, "set up stdio");
}

/* -- the container's file system ------------------------------------------------------ */

static void join_cgroup(void)
{
	/* Join before anything is mounted, so the container is accounted from the start.
	 * No files: the process was placed in its cgroup ahead of time. */
	for (uint32_t i = 0; i < plan.n_procs_files; i++)
		if (write_file(plan.procs_files[i], "0", 1) < 0)
			fail(errno, "join cgroup");
	/* Unshared after joining, so the container sees its own cgroup as its root. */
	if (plan.new_cgroupns && unshare(CLONE_NEWCGROUP) < 0)
		fail(errno, "join cgroup");
}

static void mount_rootfs(void)
{
	/* mount(2) copies one page of options; a longer list would be cut silently. */
	static char data[65536];
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t limit = page < sizeof data ? page : sizeof data;
	size_t n = (size_t)snprintf(data, limit, "lowerdir=");
	for (uint32_t i = 0; i < plan.n_lowerdirs && n < limit; i++)
		n += (size_t)snprintf(data + n, limit - n, "%s%s", i ? ":" : "", plan.lowerdirs[i]);
	if (n < limit)
		n += (size_t)snprintf(data + n, limit - n, ",upperdir=%s/upper,workdir=%s/work",
				      plan.rw_dir, plan.rw_dir);
	if (n >= limit)
		fail(E2BIG, "mount overlay rootfs");
	/*
	 * "volatile" (Linux 5.10+) skips the syncfs of the upper layer when the container's
	 * mount namespace goes: the layer is thrown away after the container anyway, and the
	 * sync cost a quarter of a millisecond. Older kernels refuse the option: mount without.
	 */
	const char volatile_opt[] = ",volatile";
	if (n + sizeof volatile_opt <= limit) {
		memcpy(data + n, volatile_opt, sizeof volatile_opt);
		if (mount("overlay", plan.rootfs, "overlay", 0, data) == 0)
			return;
		if (errno != EINVAL)
			fail(errno, "mount overlay rootfs");
		data[n] = '\0';
	}
	if (mount("overlay", plan.rootfs, "overlay", 0, data) < 0)
		fail(errno, "mount overlay rootfs");
}

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#define CLIB_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define CLIB_MOVE_MOUNT_T_EMPTY_PATH 0x40
#define CLIB_FSOPEN_CLOEXEC 0x1
#define CLIB_FSMOUNT_CLOEXEC 0x1
#define CLIB_FSCONFIG_SET_FLAG 0
#define CLIB_FSCONFIG_SET_STRING 1
#define CLIB_FSCONFIG_CMD_CREATE 6

static int open_path(int dirfd, const char *path)
{
	return openat(dirfd, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static int fsconfig_string(int fs, const char *key, const char *value)
{
	return (int)syscall(SYS_fsconfig, fs, value ? CLIB_FSCONFIG_SET_STRING : CLIB_FSCONFIG_SET_FLAG,
			    key, value, 0);
}

/* Attach the detached mount `from` on the directory `to` (both descriptors). */
static int attach(int from, int to)
{
	return (int)syscall(SYS_move_mount, from, "", to, "",
			    CLIB_MOVE_MOUNT_F_EMPTY_PATH | CLIB_MOVE_MOUNT_T_EMPTY_PATH);
}

/* In a user namespace: open the sources of the bind mounts (bind_sources above) while the
 * process still has the spawner's credentials. */
static void open_bind_sources(void)
{
	for (uint32_t i = 0; i < plan.n_mounts; i++) {
		const struct mount_step *m = &plan.mounts[i];
		bind_sources[i] = -1;
		if (m->fstype || !m->source)
			continue;
		bind_sources[i] = open(m->source, O_PATH | O_CLOEXEC);
		if (bind_sources[i] < 0)
			fail(errno, "mount bind on '%s': open '%s'", m->target, m->source);
	}
}

/*
 * In a user namespace: become its root, then attach the rootfs that came with the plan,
 * or mount the overlay; return a descriptor of the rootfs's root. The directories are
 * opened first, with the spawner's credentials: the namespace's root may be a host user
 * that may not search the host directories that lead to them.
 */
static int mount_rootfs_userns(void)
{
	int rw = open_path(AT_FDCWD, plan.rw_dir);
	if (rw < 0)
		fail(errno, "open '%s'", plan.rw_dir);
	int upper = open_path(rw, "upper"), work = open_path(rw, "work");
	int target = open_path(rw, "rootfs");
	if (upper < 0 || work < 0 || target < 0)
		fail(errno, "open the writable layer '%s'", plan.rw_dir);
	close(rw);
	open_bind_sources();
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		fail(errno, "become root in the user namespace");
	int root = received_rootfs;
	if (plan.rootfs_fd != (root >= 0))
		fail(EBADMSG, "receive the rootfs");
	if (root < 0) {
		char upper_path[64], work_path[64];
		fd_path(upper_path, sizeof upper_path, upper);
		fd_path(work_path, sizeof work_path, work);
		int fs = (int)syscall(SYS_fsopen, "overlay", CLIB_FSOPEN_CLOEXEC);
		if (fs < 0)
			fail(errno, "mount overlay rootfs");
		/* One layer at a time (Linux 6.7+): fsconfig(2) takes strings of at most 256
		 * bytes. Older kernels get them all in one, if they fit. */
		for (uint32_t i = 0; i < plan.n_lowerdirs; i++) {
			if (fsconfig_string(fs, "lowerdir+", plan.lowerdirs[i]) == 0)
				continue;
			if (i || errno != EINVAL)
				fail(errno, "mount overlay rootfs: layer '%s'", plan.lowerdirs[i]);
			char all[256];
			size_t n = 0;
			for (uint32_t j = 0; j < plan.n_lowerdirs && n < sizeof all; j++)
				n += (size_t)snprintf(all + n, sizeof all - n, "%s%s", j ? ":" : "",
						      plan.lowerdirs[j]);
			if (n >= sizeof all)
				fail(E2BIG, "mount overlay rootfs: the layers' paths are too long "
					    "for this kernel (Linux 6.7 takes any number)");
			if (fsconfig_string(fs, "lowerdir", all) < 0)
				fail(errno, "mount overlay rootfs");
			break;
		}
		if (fsconfig_string(fs, "upperdir", upper_path) < 0 ||
		    fsconfig_string(fs, "workdir", work_path) < 0 ||
		    fsconfig_string(fs, "userxattr", NULL) < 0)
			fail(errno, "mount overlay rootfs");
		/* As mount_rootfs: no sync of a layer that is thrown away. */
		(void)fsconfig_string(fs, "volatile", NULL);
		if (syscall(SYS_fsconfig, fs, CLIB_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
			fail(errno, "mount overlay rootfs");
		root = (int)syscall(SYS_fsmount, fs, CLIB_FSMOUNT_CLOEXEC, 0);
		if (root < 0)
			fail(errno, "mount overlay rootfs");
		close(fs);
	}
	if (attach(root, target) < 0)
		fail(errno, "mount overlay rootfs");
	close(upper);
	close(work);
	close(target);
	return root;
}

#define CLIB_OPEN_TREE_CLONE 1
#define CLIB_AT_RECURSIVE 0x8000

/*
 * bind_root in a user namespace: the bundle's rootfs, as it came with the plan (an
 * id-mapped mount the runtime made, the fourth descriptor) or as a recursive bind of the
 * directory made here, attached on the directory itself; returns a descriptor of its
 * root. As in mount_rootfs_userns, the host directories are opened before the process
 * becomes the namespace's root.
 */
static int bind_rootfs_userns(void)
{
	const char *path = plan.lowerdirs[0];
	int target = open_path(AT_FDCWD, path);
	if (target < 0)
		fail(errno, "open the rootfs '%s'", path);
	open_bind_sources();
	int root = received_rootfs;
	if (plan.rootfs_fd != (root >= 0))
		fail(EBADMSG, "receive the rootfs");
	if (root < 0) {
		root = (int)syscall(SYS_open_tree, target, "",
				    CLIB_OPEN_TREE_CLONE | CLIB_AT_RECURSIVE | AT_EMPTY_PATH |
					    O_CLOEXEC);
		if (root < 0)
			fail(errno, "bind the rootfs '%s'", path);
	}
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		fail(errno, "become root in the user namespace");
	if (attach(root, target) < 0)
		fail(errno, "bind the rootfs '%s'", path);
	close(target);
	return root;
}

/* Is there a path component after *rest other than "" and "."? */
static bool more_components(const char *rest)
{
	while (*rest) {
		while (*rest == '/')
			rest++;
		const char *end = strchrnul(rest, '/');
		size_t n = (size_t)(end - rest);
		if (n && !(n == 1 && rest[0] == '.'))
			return true;
		rest = end;
	}
	return false;
}

/*
 * Make the missing components of `path` inside the root, each relative to its parent,
 * which is already resolved, so a symlink in the rootfs cannot send the creation
 * elsewhere. Directories get 0755, a last file component 0644 (the umask is 0 here).
 */
static int create_beneath(int rootfd, const char *path, bool is_file)
{
	char prefix[PATH_MAX];
	size_t len = 0;
	int parent = rootfd;
	const char *p = path;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 1 && p[0] == '.') {
			p = end;
			continue;
		}
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			errno = EINVAL;
			return -1;
		}
		if (len + n + 2 > sizeof prefix) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (len)
			prefix[len++] = '/';
		const char *name = prefix + len;
		memcpy(prefix + len, p, n);
		len += n;
		prefix[len] = '\0';
		p = end;
		int fd = open_beneath(rootfd, prefix, 0);
		if (fd < 0 && errno == ENOENT) {
			if (is_file && !more_components(p)) {
				int f = openat(parent, name, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
					       0644);
				if (f < 0)
					return -1;
				close(f);
			} else if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) {
				return -1;
			}
			fd = open_beneath(rootfd, prefix, 0);
		}
		if (fd < 0)
			return -1;
		if (parent != rootfd)
			close(parent);
		parent = fd;
	}
	return parent == rootfd ? fcntl(rootfd, F_DUPFD_CLOEXEC, 0) : parent;
}

/* An O_PATH descriptor of the mount point, made if it is missing. */
static int mount_point(int rootfd, const struct mount_step *m)
{
	int fd = open_beneath(rootfd, relative(m->target), 0);
	if (fd < 0 && errno == ENOENT)
		fd = create_beneath(rootfd, m->target, m->is_file);
	return fd;
}

static void mount_one(int rootfd, const struct mount_step *m)
{
	const char *shown = m->fstype ? m->fstype : "bind";
	const char *source = m->source, *fstype = m->fstype, *data = m->data;
	char target[64], source_fd[64];
	int index = (int)(m - plan.mounts);
	if (plan.userns && bind_sources[index] >= 0) {
		fd_path(source_fd, sizeof source_fd, bind_sources[index]);
		source = source_fd;
	}
	int fd = mount_point(rootfd, m);
	if (fd < 0)
		fail(errno, "make mount point '%s'", m->target);
	if (m->cgroup) {
		/* Without a cgroup2 directory of its own, the container sees an empty,
		 * read-only tmpfs rather than the host's cgroups. */
		if (plan.have_cgroup2) {
			fstype = "cgroup2", source = "cgroup", data = NULL;
		} else {
			fstype = "tmpfs", source = "tmpfs", data = "size=0,mode=755";
		}
	}
	/* Through the descriptor: the path cannot be swapped for a symlink meanwhile. */
	fd_path(target, sizeof target, fd);
	if (mount(source, target, fstype, m->flags, data) < 0)
		fail(errno, "mount %s on '%s'", shown, m->target);
	/* A file system asked for read-write may come up read-only: sysfs has one superblock
	 * for each network namespace, and one a dropped premount mounted read-only in this
	 * namespace can outlive its lazy unmount. Its superblock is made read-write again. */
	struct statvfs vfs;
	if (fstype && !m->cgroup && !(m->flags & (MS_RDONLY | MS_BIND))) {
		int top = open_beneath(rootfd, relative(m->target), 0);
		if (top >= 0 && fstatvfs(top, &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
			char path[64];
			fd_path(path, sizeof path, top);
			if (mount(NULL, path, NULL, MS_REMOUNT | (m->flags & ~MS_RDONLY), data) < 0)
				fail(errno, "mount %s on '%s' read-write", shown, m->target);
		}
		if (top >= 0)
			close(top);
	}
	if (m->has_remount || m->propagation) {
		/* The descriptor still points below the new mount; look the target up again. */
		close(fd);
		fd = open_beneath(rootfd, relative(m->target), 0);
		if (fd < 0)
			fail(errno, "mount %s on '%s'", shown, m->target);
		fd_path(target, sizeof target, fd);
		/* A bind mount ignores flags such as ro; a remount applies them. */
		if (m->has_remount && mount(NULL, target, NULL, m->remount_flags, NULL) < 0)
			fail(errno, "mount %s on '%s'", shown, m->target);
		if (m->propagation && mount(NULL, target, NULL, m->propagation, NULL) < 0)
			fail(errno, "mount %s on '%s'", shown, m->target);
	}
	close(fd);
}

/* In a user namespace, where mknod(2) is refused: bind-mount the host's node of the
 * same path, which must be the same device, on an empty file. */
static void bind_device(int dev, const struct device_step *d)
{
	char host[PATH_MAX], target[64];
	struct stat st;
	if ((size_t)snprintf(host, sizeof host, "/dev/%s", d->path) >= sizeof host)
		fail(ENAMETOOLONG, "mknod '/dev/%s'", d->path);
	if (stat(host, &st) < 0)
		fail(errno, "bind the host's '%s' (no mknod in a user namespace)", host);
	if ((st.st_mode & S_IFMT) != (d->mode & S_IFMT) ||
	    st.st_rdev != makedev(d->major, d->minor))
		fail(ENODEV, "bind the host's '%s': it is not device %u:%u", host, d->major,
		     d->minor);
	int f = openat(dev, d->path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (f < 0) {
		if (errno == EEXIST)
			return;
		fail(errno, "mknod '/dev/%s'", d->path);
	}
	fd_path(target, sizeof target, f);
	if (mount(host, target, NULL, MS_BIND, NULL) < 0)
		fail(errno, "bind the host's '%s'", host);
	close(f);
}

static void make_dev(int rootfd)
{
	int dev = open_beneath(rootfd, "dev", O_DIRECTORY);
	if (dev < 0)
		fail(errno, "open '/dev'");
	for (uint32_t i = 0; i < plan.n_devices; i++) {
		const struct device_step *d = &plan.devices[i];
		if (plan.userns) {
			bind_device(dev, d);
			continue;
		}
		/* The umask is 0 during setup, so the mode is exact without a chmod. */
		if (mknodat(dev, d->path, d->mode, makedev(d->major, d->minor)) < 0) {
			if (errno == EEXIST)
				continue;
			fail(errno, "mknod '/dev/%s'", d->path);
		}
		if ((d->uid || d->gid) &&
		    fchownat(dev, d->path, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
			fail(errno, "mknod '/dev/%s'", d->path);
	}
	for (uint32_t i = 0; i < plan.n_dev_symlinks; i++) {
		const struct pair *s = &plan.dev_symlinks[i];
		if (symlinkat(s->first, dev, s->second) < 0 && errno != EEXIST)
			fail(errno, "symlink '/dev/%s'", s->second);
	}
	close(dev);
}

/* Make the rootfs `/` and drop every host mount from the namespace; then give it its
 * propagation (pivot_root(2) refuses a shared new root). */
static void enter_rootfs(int rootfd)
{
	if (fchdir(rootfd) < 0)
		fail(errno, "pivot_root");
	close(rootfd);
	/* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves
	 * the new root alone, with no directory needed for the old one. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail(errno, "pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		fail(errno, "pivot_root");
	if (chdir("/") < 0)
		fail(errno, "pivot_root");
	if (plan.rootfs_propagation && mount(NULL, "/", NULL, plan.rootfs_propagation, NULL) < 0)
		fail(errno, "set the propagation of '/'");
}

static void write_sysctls(void)
{
	char path[PATH_MAX];
	for (uint32_t i = 0; i < plan.n_sysctl; i++) {
		const char *key = plan.sysctl[i].first, *value = plan.sysctl[i].second;
		int n = snprintf(path, sizeof path, "/proc/sys/%s", key);
		if (n < 0 || (size_t)n >= sizeof path)
			fail(ENAMETOOLONG, "set sysctl %s", key);
		for (char *c = path + strlen("/proc/sys/"); *c; c++)
			if (*c == '.')
				*c = '/';
		if (write_file(path, value, strlen(value)) < 0)
			fail(errno, "set sysctl %s", key);
	}
}

/* Hide paths of /proc and /sys: an empty read-only tmpfs on a directory, /dev/null on a
 * file. A path this kernel does not have is skipped. */
static void mask_paths(void)
{
	for (uint32_t i = 0; i < plan.n_masked_paths; i++) {
		const char *path = plan.masked_paths[i];
		struct stat st;
		if (lstat(path, &st) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			fail(errno, "mask '%s'", path);
		}
		int rc = S_ISDIR(st.st_mode)
				 ? mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
				 : mount("/dev/null", path, NULL, MS_BIND, NULL);
		if (rc < 0)
			fail(errno, "mask '%s'", path);
	}
}

/* Bind each path on itself and remount it read-only, keeping the flags it had (the
 * kernel refuses to drop nosuid, nodev or noexec in a remount). */
static void protect_paths(void)
{
	const unsigned long kept = ST_RDONLY | ST_NOSUID | ST_NODEV | ST_NOEXEC;
	for (uint32_t i = 0; i < plan.n_readonly_paths; i++) {
		const char *path = plan.readonly_paths[i];
		struct statvfs sv;
		if (statvfs(path, &sv) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			fail(errno, "make '%s' read-only", path);
		}
		/* The ST_ flags have the values of the MS_ flags. */
		unsigned long flags = sv.f_flag & kept;
		if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, NULL) < 0)
			fail(errno, "make '%s' read-only", path);
	}
}

static void set_names(void)
{
	if (plan.hostname && sethostname(plan.hostname, plan.hostname_len) < 0)
		fail(errno, "set hostname");
	if (plan.domainname && setdomainname(plan.domainname, plan.domainname_len) < 0)
		fail(errno, "set hostname");
}

static void set_oom_score_adj(void)
{
	char value[16];
	if (!plan.has_oom_score_adj)
		return;
	int n = snprintf(value, sizeof value, "%d", plan.oom_score_adj);
	if (write_file("/proc/self/oom_score_adj", value, (size_t)n) < 0)
		fail(errno, "set oom_score_adj");
}

static void set_rlimits(void)
{
	for (uint32_t i = 0; i < plan.n_rlimits; i++) {
		const struct rlimit_step *l = &plan.rlimits[i];
		struct rlimit rl = {.rlim_cur = l->soft, .rlim_max = l->hard};
		if (setrlimit(l->resource, &rl) < 0)
			fail(errno, "set rlimit %u to %llu:%llu", l->resource,
			     (unsigned long long)l->soft, (unsigned long long)l->hard);
	}
}

/* -- identity and privileges ---------------------------------------------------------- */

static int prctl0(int option, unsigned long arg)
{
	return prctl(option, arg, 0UL, 0UL, 0UL);
}

/* "set groups [1, 2]", as the Python child words it. */
static _Noreturn void fail_groups(int err)
{
	char text[256];
	size_t n = (size_t)snprintf(text, sizeof text, "[");
	for (uint32_t i = 0; i < plan.n_additional_gids && n < sizeof text; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "%s%u", i ? ", " : "",
				      (unsigned)plan.additional_gids[i]);
	if (n < sizeof text)
		snprintf(text + n, sizeof text - n, "]");
	fail(err, "set groups %s", text);
}

static int capset_all(void)
{
	struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2] = {
		{(uint32_t)plan.cap_effective, (uint32_t)plan.cap_permitted,
		 (uint32_t)plan.cap_inheritable},
		{(uint32_t)(plan.cap_effective >> 32), (uint32_t)(plan.cap_permitted >> 32),
		 (uint32_t)(plan.cap_inheritable >> 32)},
	};
	return (int)syscall(SYS_capset, &header, data);
}

static void set_credentials(void)
{
	/* The bounding set can only shrink, and only while we still hold CAP_SETPCAP. */
	if (plan.has_cap_bounding)
		for (uint32_t cap = 0; cap <= plan.last_cap; cap++)
			if (!(plan.cap_bounding & (1ULL << cap)) &&
			    prctl0(PR_CAPBSET_DROP, cap) < 0)
				fail(errno, "set capabilities");
	/* Keep the permitted set across the change of uid, to set the final sets after. */
	if (prctl0(PR_SET_KEEPCAPS, 1) < 0)
		fail(errno, "set capabilities");
	if (!plan.setgroups) {
		/* A non-root user's namespace that maps its own gid alone denies setgroups(2):
		 * the process keeps the caller's supplementary groups (unmapped, they show as
		 * the overflow gid; dropping one could grant what a file's mode denies to that
		 * group), and can be given no other. */
		if (plan.n_additional_gids)
			fail_groups(EPERM);
	} else if (setgroups(plan.n_additional_gids, plan.additional_gids) < 0) {
		fail_groups(errno);
	}
	/* EINVAL in a user namespace: the id is not in its map (a non-root user's holds its
	 * own id alone, without newuidmap and /etc/subuid ranges). */
	const char *unmapped = plan.userns ? " (the user namespace does not map it)" : "";
	if (setresgid(plan.gid, plan.gid, plan.gid) < 0)
		fail(errno, "set gid %u%s", plan.gid, errno == EINVAL ? unmapped : "");
	if (setresuid(plan.uid, plan.uid, plan.uid) < 0)
		fail(errno, "set uid %u%s", plan.uid, errno == EINVAL ? unmapped : "");
	if (prctl0(PR_SET_KEEPCAPS, 0) < 0 || capset_all() < 0 ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0UL, 0UL, 0UL) < 0)
		fail(errno, "set capabilities");
	/* The kernel raises an ambient capability only if it is permitted and inheritable;
	 * runc's own template asks for ambient ones without inheritable, and runc goes on
	 * without them (with a warning). So does this: EPERM is not a failure. */
	for (uint32_t i = 0; i < plan.n_cap_ambient; i++)
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)plan.cap_ambient[i],
			  0UL, 0UL) < 0 &&
		    errno != EPERM)
			fail(errno, "set capabilities");
	/* A change of uid clears the parent-death signal; ask for it again. */
	if (!detached && prctl0(PR_SET_PDEATHSIG, SIGKILL) < 0)
		fail(errno, "set the parent-death signal");
	if (plan.no_new_privileges && prctl0(PR_SET_NO_NEW_PRIVS, 1) < 0)
		fail(errno, "set no_new_privs");
}

/* The last step before the exec (or before the credentials without no_new_privs, while
 * CAP_SYS_ADMIN still allows it): from here on, the filter judges every system call. */
static void install_seccomp(void)
{
	if (!plan.seccomp_len)
		return;
	struct sock_fprog prog = {
		.len = (unsigned short)(plan.seccomp_len / sizeof(struct sock_filter)),
		.filter = (struct sock_filter *)(uintptr_t)plan.seccomp,
	};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, plan.seccomp_flags, &prog) < 0)
		fail(errno, "install the seccomp filter");
}

/* -- mounting ahead of time --------------------------------------------------------- */

static int pre_rootfd = -1;  /* the rootfs mounted ahead of time */
static uint32_t pre_mounts;  /* how many of the plan's mounts were made on it */
static bool pre_ok;          /* all of that worked */

/* Detach what a premount left; the upper directory is the spawner's to throw away. */
static void drop_premount(const char *rootfs)
{
	char target[64];
	if (pre_rootfd >= 0) {
		fd_path(target, sizeof target, pre_rootfd);
		rootfs = target;
	}
	if (rootfs && umount2(rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		fail(errno, "unmount the rootfs prepared ahead of time");
	if (pre_rootfd >= 0)
		close(pre_rootfd);
	pre_rootfd = -1;
	pre_ok = false;
}

/* Mount the rootfs and the mounts before the first cgroup mount (which must wait for the
 * cgroup namespace) of the plan in plan_buf, the likely next container's. */
static void premount(size_t len)
{
	jmp_buf failed;
	umask(0);
	if (setjmp(failed)) {
		/* Still in premount mode: a failure to undo it is ignored too. The rootfs is
		 * unset if the plan was bad, and then nothing was mounted. */
		if (setjmp(failed) == 0)
			drop_premount(pre_rootfd >= 0 ? NULL : plan.rootfs);
		premount_failed = NULL;
		pre_rootfd = -1;
		pre_ok = false;
		return;
	}
	premount_failed = &failed;
	plan.rootfs = NULL;
	parse_plan(plan_buf, len, &plan, PREMOUNT_MAGIC);
	/* Its mounts would belong to this process's namespaces, not to those it joins. */
	if (plan.n_joins)
		fail(EINVAL, "premount a plan that joins namespaces");
	mount_rootfs();
	pre_rootfd = open(plan.rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (pre_rootfd < 0)
		fail(errno, "open the rootfs '%s'", plan.rootfs);
	uint32_t i = 0;
	for (; i < plan.n_mounts && !plan.mounts[i].cgroup; i++)
		mount_one(pre_rootfd, &plan.mounts[i]);
	pre_mounts = i;
	/* The early part of the seccomp filter (the spawner never sends one that refuses
	 * the setup's own calls): installed now, the start only adds the small rest. As
	 * root with every capability, no no_new_privs is needed yet. */
	install_seccomp();
	pre_ok = true;
	premount_failed = NULL;
}

/* -- users by name ----------------------------------------------------------------- */

#define MAX_ACCOUNT_FILE (4u << 20)

/* Open one of the container's account files (after pivot_root: its own) as a stream, if
 * it is a regular file; NULL if there is none. A FIFO there would hang the start. */
static FILE *open_account_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return NULL;
		fail(errno, "read '%s'", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_ACCOUNT_FILE)
		fail(EINVAL, "read '%s': not a regular file of at most 4 MiB", path);
	FILE *f = fdopen(fd, "r");
	if (!f)
		fail(errno, "read '%s'", path);
	return f;
}

/* Split a line of /etc/passwd or /etc/group at ':' into at most n fields. */
static int split_fields(char *line, char **fields, int n)
{
	int count = 0;
	line[strcspn(line, "\n")] = '\0';
	while (count < n) {
		fields[count++] = line;
		char *colon = strchr(line, ':');
		if (!colon)
			break;
		*colon = '\0';
		line = colon + 1;
	}
	return count;
}

static bool parse_id(const char *s, uint32_t *out)
{
	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 10)
		return false;
	unsigned long long v = strtoull(s, NULL, 10);
	if (v >= 0xffffffffull)
		return false;
	*out = (uint32_t)v;
	return true;
}

static char home_env[PATH_MAX + 8];

/* Look plan.user ("user[:group]", names or numbers) up in the container's /etc/passwd and
 * /etc/group, as Docker does: a user found by name or uid gives its uid, gid and home, and
 * the groups that list it become supplementary groups; a number no entry has is used as
 * it is, with gid 0 and home "/". */
static void resolve_user(void)
{
	char spec[512];
	if (snprintf(spec, sizeof spec, "%s", plan.user) >= (int)sizeof spec)
		fail(ENAMETOOLONG, "look up user '%s'", plan.user);
	char *group = strchr(spec, ':');
	if (group)
		*group++ = '\0';
	const char *user = spec;
	uint32_t uid = 0, gid = 0;
	bool numeric = parse_id(user, &uid), found = false;
	static char name[256], home[PATH_MAX];
	snprintf(home, sizeof home, "/");
	char *line = NULL;
	size_t cap = 0;
	FILE *f = open_account_file("/etc/passwd");
	while (f && getline(&line, &cap, f) > 0) {
		char *fld[7];
		uint32_t id, gid_field;
		if (split_fields(line, fld, 7) < 7 || !parse_id(fld[2], &id) ||
		    !parse_id(fld[3], &gid_field))
			continue;
		if (numeric ? id == uid : strcmp(fld[0], user) == 0) {
			found = true;
			uid = id;
			gid = gid_field;
			snprintf(name, sizeof name, "%s", fld[0]);
			snprintf(home, sizeof home, "%s", *fld[5] ? fld[5] : "/");
			break;
		}
	}
	if (f)
		fclose(f);
	if (!found && !numeric)
		fail(ENOENT, "find user '%s' in the container's /etc/passwd", user);
	bool group_found = group == NULL;
	if (group && parse_id(group, &gid))
		group_found = true;
	uint32_t n_extra = 0;
	f = open_account_file("/etc/group");
	while (f && getline(&line, &cap, f) > 0) {
		char *fld[4];
		uint32_t id;
		if (split_fields(line, fld, 4) < 3 || !parse_id(fld[2], &id))
			continue;
		if (!group_found && strcmp(fld[0], group) == 0) {
			gid = id;
			group_found = true;
		}
		if (!found || group)
			continue;
		/* The members field: names separated by commas. */
		for (char *m = fld[3] ? strtok(fld[3], ",") : NULL; m; m = strtok(NULL, ","))
			if (strcmp(m, name) == 0 && id != gid &&
			    plan.n_additional_gids + n_extra < MAX_GIDS)
				plan.additional_gids[plan.n_additional_gids + n_extra++] = id;
	}
	free(line);
	if (f)
		fclose(f);
	if (!group_found)
		fail(ENOENT, "find group '%s' in the container's /etc/group", group);
	plan.n_additional_gids += n_extra;
	plan.uid = uid;
	plan.gid = gid;
	if (plan.set_home && plan.n_env < MAX_ENV) {
		snprintf(home_env, sizeof home_env, "HOME=%s", home);
		plan.env[plan.n_env++] = home_env;
		plan.env[plan.n_env] = NULL;
	}
}

/* -- a terminal ----------------------------------------------------------------------- */

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* Send the master end of a new pseudo terminal to the console socket and make the other
 * end this process's controlling terminal and stdio (see terminal above). The process
 * must lead its own session already. */
static void set_up_console(int console)
{
	if (console < 0)
		fail(EBADMSG, "set up the terminal: no console socket came with the plan");
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail(errno, "open '/dev/ptmx'");
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail(errno, "unlock the terminal");
	int peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (peer < 0)
		fail(errno, "open the terminal's other end");
	if (plan.console_width && plan.console_height) {
		struct winsize size = {.ws_row = (unsigned short)plan.console_height,
				       .ws_col = (unsigned short)plan.console_width};
		if (ioctl(peer, TIOCSWINSZ, &size) < 0)
			fail(errno, "set the terminal's size");
	}
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	memset(&control, 0, sizeof control);
	char name[] = "/dev/ptmx";
	struct iovec iov = {name, sizeof name - 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof control.buf};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (sendmsg(console, &msg, MSG_NOSIGNAL) < 0)
		fail(errno, "send the terminal to the console socket");
	close(master);
	close(console);
	if (fchown(peer, plan.uid, (gid_t)-1) < 0)
		fail(errno, "give the terminal to uid %u", plan.uid);
	if (ioctl(peer, TIOCSCTTY, 0) < 0)
		fail(errno, "make the terminal controlling");
	for (int i = 0; i < 3; i++)
		if (dup2(peer, i) < 0)
			fail(errno, "set up stdio on the terminal");
	close(peer);
}

/* -- the container's hooks ----------------------------------------------------------- */

static void reset_signals(void);

#define HOOK_SAID_MAX 512 /* the start of a failing hook's output that goes in the report */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Run one hook (see pause_for_hooks above): fork, exec it with the state on its stdin,
 * read back its output while feeding the state and waiting for its end, kill it at its
 * timeout. Its failure fails the setup, naming the kind and the path.
 */
static void run_hook(const char *kind, const struct hook_step *h, const char *state,
		     uint32_t state_len)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		fail(errno, "run %s hook '%s'", kind, h->path);
	pid_t pid = fork();
	if (pid < 0)
		fail(errno, "run %s hook '%s'", kind, h->path);
	if (pid == 0) {
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
			_exit(EXIT_NOT_EXECUTABLE);
		reset_signals();
		/* The setup runs with umask 0; a hook gets the usual one. */
		umask(022);
		execve(h->path, h->argv, h->env);
		char msg[256];
		int n = snprintf(msg, sizeof msg, "exec: %s", strerror(errno));
		ssize_t ignored = write(2, msg, (size_t)n);
		(void)ignored;
		_exit(errno == ENOENT ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE);
	}
	close(in[0]);
	close(out[1]);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		int err = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail(err, "run %s hook '%s'", kind, h->path);
	}
	int to = in[1], from = out[0];
	if (fcntl(to, F_SETFL, O_NONBLOCK) < 0 || fcntl(from, F_SETFL, O_NONBLOCK) < 0)
		fail(errno, "run %s hook '%s'", kind, h->path);
	char said[HOOK_SAID_MAX];
	size_t n_said = 0;
	uint32_t sent = 0;
	long long deadline = h->timeout ? now_ms() + (long long)h->timeout * 1000 : -1;
	bool ended = false;
	while (!ended) {
		if (to >= 0 && sent == state_len) {
			close(to);
			to = -1;
		}
		struct pollfd fds[3] = {{pidfd, POLLIN, 0}, {from, POLLIN, 0}, {to, POLLOUT, 0}};
		int wait = -1;
		if (deadline >= 0) {
			long long left = deadline - now_ms();
			wait = left > 0 ? (int)(left < INT_MAX ? left : INT_MAX) : 0;
		}
		int n = poll(fds, 3, wait);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail(errno, "run %s hook '%s'", kind, h->path);
		if (n == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail(ETIMEDOUT, "run %s hook '%s': it ran past its timeout of %us", kind,
			     h->path, h->timeout);
		}
		if (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
			/* SIGPIPE is ignored here: a hook that does not read gets EPIPE. */
			ssize_t w = write(to, state + sent, state_len - sent);
			if (w > 0)
				sent += (uint32_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				sent = state_len;
		}
		if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			char buf[4096];
			ssize_t r = read(from, buf, sizeof buf);
			if (r > 0) {
				size_t keep = (size_t)r < sizeof said - n_said ? (size_t)r
									: sizeof said - n_said;
				memcpy(said + n_said, buf, keep);
				n_said += keep;
			} else if (r == 0) {
				close(from);
				from = -1;
			}
		}
		ended = fds[0].revents & POLLIN;
	}
	close(pidfd);
	if (to >= 0)
		close(to);
	if (from >= 0) {
		/* What the hook wrote last, if its output is still open (a child it left). */
		ssize_t r = read(from, said + n_said, sizeof said - n_said);
		if (r > 0)
			n_said += (size_t)r;
		close(from);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail(errno, "run %s hook '%s'", kind, h->path);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	while (n_said && (said[n_said - 1] == '\n' || said[n_said - 1] == ' '))
		n_said--;
	for (size_t i = 0; i < n_said; i++)
		if (said[i] == '\0' || said[i] == '\n')
			said[i] = ' ';
	if (WIFEXITED(status))
		fail(EIO, "run %s hook '%s': exit status %d%s%.*s", kind, h->path,
		     WEXITSTATUS(status), n_said ? ": " : "", (int)n_said, said);
	fail(EIO, "run %s hook '%s': killed by signal %d%s%.*s", kind, h->path,
	     WTERMSIG(status), n_said ? ": " : "", (int)n_said, said);
}

static void run_hooks(const char *kind, const struct hook_step *hooks, uint32_t n,
		      const char *state, uint32_t state_len)
{
	struct sigaction ignore = {.sa_handler = SIG_IGN}, saved;
	if (!n)
		return;
	sigaction(SIGPIPE, &ignore, &saved);
	for (uint32_t i = 0; i < n; i++)
		run_hook(kind, &hooks[i], state ? state : "", state ? state_len : 0);
	sigaction(SIGPIPE, &saved, NULL);
}

/* Let the runtime run its prestart and createRuntime hooks (see pause_for_hooks). */
static void pause_for_runtime_hooks(void)
{
	char go = 0;
	ssize_t n;
	if (send(report_fd, "H", 1, MSG_NOSIGNAL) < 0)
		fail(errno, "wait for the runtime's hooks");
	do
		n = recv(report_fd, &go, 1, 0);
	while (n < 0 && errno == EINTR);
	/* Anything else: the runtime gave up (a hook failed) and ends this process. */
	if (n != 1 || go != 'G')
		_exit(SETUP_FAILED);
}

/* -- namespaces joined by path ----------------------------------------------------------- */

static const char *namespace_name(uint64_t flag)
{
	return flag == CLONE_NEWNET ? "network" : flag == CLONE_NEWUTS ? "uts" : "ipc";
}

/* Join the namespaces of the plan's joins (see above), before anything is mounted. */
static void join_namespaces(void)
{
	for (uint32_t i = 0; i < plan.n_joins; i++) {
		const struct join_step *j = &plan.joins[i];
		const char *kind = namespace_name(j->flag);
		int fd = received_joins[i];
		if (fd < 0 && plan.join_fds)
			fail(EBADMSG, "receive the %s namespace '%s'", kind, j->path);
		if (fd < 0)
			fd = open(j->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fail(errno, "open the %s namespace '%s'", kind, j->path);
		if (setns(fd, (int)j->flag) < 0)
			fail(errno, "join the %s namespace '%s'", kind, j->path);
		close(fd);
		received_joins[i] = -1;
	}
}

/* -- the whole setup, in the order of _child._setup ----------------------------------- */

static void become_the_process(void);

static void setup(void)
{
	umask(0);
	join_cgroup();
	join_namespaces();
	/* Before the process may become a user namespace's root, who may not search the
	 * host's directories on the way, and before the rootfs hides the path. */
	if (plan.exec_fifo) {
		exec_fifo_fd = open(plan.exec_fifo, O_PATH | O_CLOEXEC);
		if (exec_fifo_fd < 0)
			fail(errno, "open the exec FIFO '%s'", plan.exec_fifo);
	}
	int rootfd;
	uint32_t first = 0;
	if (pre_ok && plan.premounted && !plan.n_joins) {
		rootfd = pre_rootfd;
		first = pre_mounts;
	} else if (plan.bind_root && plan.userns) {
		rootfd = bind_rootfs_userns();
	} else if (plan.bind_root) {
		const char *root = plan.lowerdirs[0];
		/* A copy the runtime made in its own mount namespace (for a slave rootfs: it
		 * keeps the original's peer group), or a bind made here. */
		if (received_rootfs >= 0) {
			int target = open_path(AT_FDCWD, root);
			if (target < 0 || attach(received_rootfs, target) < 0)
				fail(errno, "bind the rootfs '%s'", root);
			close(target);
			/* A slave before anything is mounted on it: as a peer, every mount of the
			 * setup would appear on the host too. */
			if (mount(NULL, root, NULL, MS_REC | MS_SLAVE, NULL) < 0)
				fail(errno, "make the rootfs '%s' a slave", root);
		} else if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0) {
			fail(errno, "bind the rootfs '%s'", root);
		}
		rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (rootfd < 0)
			fail(errno, "open the rootfs '%s'", root);
	} else if (plan.userns) {
		if (pre_rootfd >= 0)
			drop_premount(NULL);
		rootfd = mount_rootfs_userns();
	} else {
		if (pre_rootfd >= 0)
			drop_premount(NULL);
		mount_rootfs();
		rootfd = open(plan.rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (rootfd < 0)
			fail(errno, "open the rootfs '%s'", plan.rootfs);
	}
	for (uint32_t i = first; i < plan.n_mounts; i++)
		mount_one(rootfd, &plan.mounts[i]);
	if (plan.n_devices || plan.n_dev_symlinks)
		make_dev(rootfd);
	if (plan.pause_for_hooks)
		pause_for_runtime_hooks();
	run_hooks("createContainer", plan.create_hooks, plan.n_create_hooks, plan.create_state,
		  plan.create_state_len);
	enter_rootfs(rootfd);
	write_sysctls();
	mask_paths();
	protect_paths();
	if (plan.readonly_root && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		fail(errno, "make the rootfs read-only");
	set_names();
	set_oom_score_adj();
	become_the_process();
}

/* What a container's first process and an exec'd one share, once in the container: a
 * session of its own (no controlling terminal of the host's, or the container's own),
 * the rlimits, the user, the credentials, the umask and the working directory. */
static void become_the_process(void)
{
	if (setsid() < 0)
		fail(errno, "setsid");
	set_rlimits();
	if (plan.user)
		resolve_user();
	if (plan.terminal)
		set_up_console(received_console);
	if (!plan.no_new_privileges)
		install_seccomp();
	set_credentials();
	umask(plan.has_umask ? plan.umask : 022);
	if (chdir(plan.cwd) < 0)
		fail(errno, "chdir to '%s'", plan.cwd);
	/* Nothing but stdio and what the command opens itself crosses the exec; the
	 * report socket closes there, which tells the spawner the command started. */
	if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
		fail(errno, "mark descriptors close-on-exec");
}

/* -- exec ---------------------------------------------------------------------------- */

/* An ignored signal stays ignored across execve(2), and the spawner, a Python process,
 * ignores SIGPIPE, SIGXFSZ and SIGINT: the command starts with every signal at its default
 * and none blocked, as under Docker. */
static void reset_signals(void)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t none;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL); /* the C library's own signals refuse: fine */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static const char *search_path(void)
{
	const char *path = default_path;
	/* The last PATH wins, as it would in a dict built from the list. */
	for (uint32_t i = 0; i < plan.n_env; i++)
		if (strncmp(plan.env[i], "PATH=", 5) == 0)
			path = plan.env[i] + 5;
	return path;
}

static _Noreturn void exec_failed(const char *name, const char *why, int code)
{
	char msg[REPORT_MAX];
	/* A closed stderr must not turn exit code 127 into death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	int n = snprintf(msg, sizeof msg, "containerlib: exec '%s': %s\n", name, why);
	if (n < 0 || (size_t)n >= sizeof msg)
		n = snprintf(msg, sizeof msg, "containerlib: exec: %s\n", why);
	ssize_t ignored = write(2, msg, (size_t)n);
	(void)ignored;
	_exit(code);
}

/* execve the command, searching $PATH as a shell does; Docker's exit codes if none runs. */
static _Noreturn void exec_command(void)
{
	const char *name = plan.args[0];
	bool denied = false;
	int other = 0;
	if (strchr(name, '/')) {
		execve(name, plan.args, plan.env);
		if (errno == EACCES)
			denied = true;
		else if (errno != ENOENT && errno != ENOTDIR)
			other = errno;
	} else {
		char candidate[PATH_MAX];
		const char *dir = search_path();
		for (;;) {
			const char *end = strchrnul(dir, ':');
			int dlen = (int)(end - dir);
			int n = dlen ? snprintf(candidate, sizeof candidate, "%.*s/%s", dlen, dir, name)
				     : snprintf(candidate, sizeof candidate, "./%s", name);
			if (n < 0 || (size_t)n >= sizeof candidate)
				errno = ENAMETOOLONG;
			else
				execve(candidate, plan.args, plan.env);
			if (errno == EACCES)
				denied = true;
			else if (errno != ENOENT && errno != ENOTDIR)
				other = errno;
			if (!*end)
				break;
			dir = end + 1;
		}
	}
	if (denied)
		exec_failed(name, "permission denied", EXIT_NOT_EXECUTABLE);
	if (other)
		exec_failed(name, strerror(other), EXIT_NOT_EXECUTABLE);
	if (strchr(name, '/'))
		exec_failed(name, "no such file or directory", EXIT_NOT_FOUND);
	exec_failed(name, "executable file not found in $PATH", EXIT_NOT_FOUND);
}

/* -- --dump: the plan as JSON, for the tests ------------------------------------------ */

/* Strings are bytes: each byte >= 0x80 or < 0x20 is written as \u00XX, so a reader gets
 * the bytes back with .encode("latin-1"). */
static void json_str(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			printf("\\%c", *c);
		else if (*c < 0x20 || *c >= 0x7f)
			printf("\\u%04x", *c);
		else
			putchar(*c);
	}
	putchar('"');
}

static void json_key(const char *key, bool first)
{
	printf("%s\"%s\": ", first ? "{" : ", ", key);
}

static void json_strs(const char *key, const char *const *items, uint32_t n)
{
	json_key(key, false);
	putchar('[');
	for (uint32_t i = 0; i < n; i++) {
		fputs(i ? ", " : "", stdout);
		json_str(items[i]);
	}
	putchar(']');
}

static void json_pairs(const char *key, const struct pair *items, uint32_t n)
{
	json_key(key, false);
	putchar('[');
	for (uint32_t i = 0; i < n; i++) {
		fputs(i ? ", [" : "[", stdout);
		json_str(items[i].first);
		fputs(", ", stdout);
		json_str(items[i].second);
		putchar(']');
	}
	putchar(']');
}

static void json_u32s(const char *key, const uint32_t *items, uint32_t n)
{
	json_key(key, false);
	putchar('[');
	for (uint32_t i = 0; i < n; i++)
		printf("%s%u", i ? ", " : "", items[i]);
	putchar(']');
}

static void json_u64(const char *key, uint64_t v)
{
	json_key(key, false);
	printf("%llu", (unsigned long long)v);
}

static void json_opt_u64(const char *key, bool present, uint64_t v)
{
	if (present) {
		json_u64(key, v);
	} else {
		json_key(key, false);
		fputs("null", stdout);
	}
}

static void json_bool(const char *key, bool v)
{
	json_key(key, false);
	fputs(v ? "true" : "false", stdout);
}

static void json_ostr(const char *key, const char *s)
{
	json_key(key, false);
	json_str(s);
}

static void dump_mount(const struct mount_step *m)
{
	json_key("target", true);
	json_str(m->target);
	json_ostr("source", m->source);
	json_ostr("fstype", m->fstype);
	json_u64("flags", m->flags);
	json_ostr("data", m->data);
	json_opt_u64("remount_flags", m->has_remount, m->remount_flags);
	json_u64("propagation", m->propagation);
	json_bool("is_file", m->is_file);
	json_bool("cgroup", m->cgroup);
	putchar('}');
}

static void dump_device(const struct device_step *d)
{
	json_key("path", true);
	json_str(d->path);
	json_u64("mode", d->mode);
	json_u64("major", d->major);
	json_u64("minor", d->minor);
	json_u64("uid", d->uid);
	json_u64("gid", d->gid);
	putchar('}');
}

static uint32_t count_strs(char *const *items)
{
	uint32_t n = 0;
	while (items[n])
		n++;
	return n;
}

static void dump_hooks(const char *key, const struct hook_step *hooks, uint32_t n)
{
	json_key(key, false);
	putchar('[');
	for (uint32_t i = 0; i < n; i++) {
		fputs(i ? ", " : "", stdout);
		json_key("path", true);
		json_str(hooks[i].path);
		json_strs("argv", (const char *const *)hooks[i].argv, count_strs(hooks[i].argv));
		json_strs("env", (const char *const *)hooks[i].env, count_strs(hooks[i].env));
		json_u64("timeout", hooks[i].timeout);
		putchar('}');
	}
	putchar(']');
}

static void dump_plan(const struct plan *p)
{
	json_key("rootfs", true);
	json_str(p->rootfs);
	json_ostr("rw_dir", p->rw_dir);
	json_strs("lowerdirs", p->lowerdirs, p->n_lowerdirs);
	json_bool("readonly_root", p->readonly_root);
	json_u64("rootfs_propagation", p->rootfs_propagation);
	json_bool("new_cgroupns", p->new_cgroupns);
	json_key("namespace_paths", false);
	putchar('[');
	for (uint32_t i = 0; i < p->n_joins; i++) {
		printf("%s[%llu, ", i ? ", " : "", (unsigned long long)p->joins[i].flag);
		json_str(p->joins[i].path);
		putchar(']');
	}
	putchar(']');
	json_bool("join_fds", p->join_fds);
	json_key("mounts", false);
	putchar('[');
	for (uint32_t i = 0; i < p->n_mounts; i++) {
		fputs(i ? ", " : "", stdout);
		dump_mount(&p->mounts[i]);
	}
	putchar(']');
	json_key("devices", false);
	putchar('[');
	for (uint32_t i = 0; i < p->n_devices; i++) {
		fputs(i ? ", " : "", stdout);
		dump_device(&p->devices[i]);
	}
	putchar(']');
	json_pairs("dev_symlinks", p->dev_symlinks, p->n_dev_symlinks);
	json_strs("masked_paths", p->masked_paths, p->n_masked_paths);
	json_strs("readonly_paths", p->readonly_paths, p->n_readonly_paths);
	json_ostr("hostname", p->hostname);
	json_ostr("domainname", p->domainname);
	json_pairs("sysctl", p->sysctl, p->n_sysctl);
	json_u64("uid", p->uid);
	json_u64("gid", p->gid);
	json_u32s("additional_gids", p->additional_gids, p->n_additional_gids);
	json_opt_u64("umask", p->has_umask, p->umask);
	json_key("rlimits", false);
	putchar('[');
	for (uint32_t i = 0; i < p->n_rlimits; i++)
		printf("%s[%u, %llu, %llu]", i ? ", " : "", p->rlimits[i].resource,
		       (unsigned long long)p->rlimits[i].soft,
		       (unsigned long long)p->rlimits[i].hard);
	putchar(']');
	json_bool("no_new_privileges", p->no_new_privileges);
	json_opt_u64("cap_bounding", p->has_cap_bounding, p->cap_bounding);
	json_u64("cap_effective", p->cap_effective);
	json_u64("cap_permitted", p->cap_permitted);
	json_u64("cap_inheritable", p->cap_inheritable);
	json_u32s("cap_ambient", p->cap_ambient, p->n_cap_ambient);
	json_key("oom_score_adj", false);
	if (p->has_oom_score_adj)
		printf("%d", p->oom_score_adj);
	else
		fputs("null", stdout);
	json_ostr("cwd", p->cwd);
	json_strs("args", (const char *const *)p->args, p->n_args);
	json_strs("env", (const char *const *)p->env, p->n_env);
	json_strs("procs_files", p->procs_files, p->n_procs_files);
	json_bool("have_cgroup2", p->have_cgroup2);
	json_u64("last_cap", p->last_cap);
	json_bool("premounted", p->premounted);
	json_u64("seccomp_flags", p->seccomp_flags);
	json_u64("seccomp_len", p->seccomp_len);
	json_ostr("user", p->user);
	json_bool("set_home", p->set_home);
	json_bool("userns", p->userns);
	json_bool("setgroups", p->setgroups);
	json_bool("rootfs_fd", p->rootfs_fd);
	json_u64("join_flags", p->join_flags);
	json_bool("bind_root", p->bind_root);
	json_ostr("exec_fifo", p->exec_fifo);
	json_bool("terminal", p->terminal);
	json_u64("console_width", p->console_width);
	json_u64("console_height", p->console_height);
	json_bool("init", p->init);
	json_bool("pause_for_hooks", p->pause_for_hooks);
	dump_hooks("create_container_hooks", p->create_hooks, p->n_create_hooks);
	json_ostr("create_state", p->create_state);
	dump_hooks("start_container_hooks", p->start_hooks, p->n_start_hooks);
	json_ostr("start_state", p->start_state);
	puts("}");
}

static int dump_main(void)
{
	size_t len = 0;
	for (;;) {
		unsigned char extra;
		unsigned char *to = len < sizeof plan_buf ? plan_buf + len : &extra;
		size_t room = len < sizeof plan_buf ? sizeof plan_buf - len : 1;
		ssize_t n = read(0, to, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail(errno, "receive the plan");
		if (n == 0)
			break;
		if (to == &extra)
			fail(EMSGSIZE, "receive the plan");
		len += (size_t)n;
	}
	if (len == 0)
		return 0; /* as the end of file on the socket: nothing to do */
	uint32_t magic = PLAN_MAGIC;
	if (len >= sizeof magic) {
		memcpy(&magic, plan_buf, sizeof magic);
		magic = le32toh(magic);
		if (magic != PREMOUNT_MAGIC && magic != EXEC_MAGIC)
			magic = PLAN_MAGIC;
	}
	parse_plan(plan_buf, len, &plan, magic);
	dump_plan(&plan);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* -- main ---------------------------------------------------------------------------- */

static bool parse_number(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	if (*s < '0' || *s > '9')
		return false;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' && *out <= max;
}

/* -- the forker ------------------------------------------------------------------------ */

/* Which of the extra descriptors is which: `first` says whether the plan's first one
 * (the rootfs, or the exec's pidfd) came. */
static void take_extra_fds(bool first)
{
	int i = 0;
	if (first)
		received_rootfs = extra_fds[i++];
	for (uint32_t j = 0; j < plan.n_joins; j++)
		received_joins[j] = plan.join_fds ? extra_fds[i++] : -1;
	if (plan.terminal)
		received_console = extra_fds[i++];
	if (i < MAX_EXTRA_FDS && extra_fds[i] >= 0)
		fail(EBADMSG, "receive the plan: a descriptor too many");
}

/* The reaper as PID 1 (see init above); the command runs in a child. */
static _Noreturn void init_and_exec(int sock)
{
	sigset_t all;
	sigfillset(&all);
	/* Blocked from before the fork, so that none is lost; waited for below. A blocked
	 * signal reaches a namespace's init even without a handler. */
	sigprocmask(SIG_BLOCK, &all, NULL);
	if (prctl(PR_SET_DUMPABLE, 0, 0L, 0L, 0L) < 0)
		fail(errno, "make init non-dumpable");
	pid_t child = fork();
	if (child < 0)
		fail(errno, "fork the command under init");
	if (child == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		exec_command();
	}
	/* The command's exec closes its copy of the socket; this is the other. Nothing of
	 * the container's stdio is kept here either: its pipes end with the command's. */
	close(sock);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int i = 0; i < 3; i++)
		if (null >= 0)
			dup2(null, i);
	/* And nothing else: what the setup held is marked close-on-exec, and init does not
	 * exec. */
	syscall(SYS_close_range, 3u, ~0u, 0u);
	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&all, &info);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(child, sig);
			continue;
		}
		int status;
		pid_t done;
		while ((done = waitpid(-1, &status, WNOHANG)) > 0)
			if (done == child)
				_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
}

/* Created, not started (the OCI create/start split): say so, then wait until `start`
 * opens the exec FIFO for reading; run the startContainer hooks, whose failure goes to
 * `start` through the FIFO, then write "0". */
static void wait_for_start(int sock)
{
	char path[64];
	if (send(sock, "C", 1, MSG_NOSIGNAL) < 0)
		fail(errno, "answer the create");
	fd_path(path, sizeof path, exec_fifo_fd);
	int fd;
	do
		fd = open(path, O_WRONLY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		fail(errno, "open the exec FIFO");
	report_fd = fd;
	run_hooks("startContainer", plan.start_hooks, plan.n_start_hooks, plan.start_state,
		  plan.start_state_len);
	if (write(fd, "0", 1) != 1)
		fail(errno, "write the exec FIFO");
	close(fd);
	close(exec_fifo_fd);
}

/* The rest of a warm process's life, from its socket on: set up, wait, run the plan. */
static _Noreturn void warm_main(int sock, unsigned long flags)
{
	report_fd = sock;
	warm_up(sock, flags);
	int stdio[3];
	size_t len = receive_plan(sock, stdio);
	if (is_premount(len)) {
		premount(len);
		/* The spawner waits for this before it moves the writable layer into place. */
		if (send(sock, pre_ok ? "P" : "F", 1, MSG_NOSIGNAL) < 0)
			fail(errno, "answer the premount");
		len = receive_plan(sock, stdio);
	}
	parse_plan(plan_buf, len, &plan, PLAN_MAGIC);
	take_extra_fds(plan.rootfs_fd);
	set_up_stdio(stdio);
	setup();
	reset_signals();
	if (exec_fifo_fd >= 0)
		wait_for_start(sock);
	else
		run_hooks("startContainer", plan.start_hooks, plan.n_start_hooks,
			  plan.start_state, plan.start_state_len);
	if (plan.no_new_privileges)
		install_seccomp();
	if (plan.init)
		init_and_exec(sock);
	exec_command();
}

static int send_clone_answer(int fd, int64_t pid, int sock)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct iovec iov = {&pid, sizeof pid};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (sock >= 0) {
		memset(&control, 0, sizeof control);
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof control.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &sock, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : 0;
}

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/* clone3's arguments, as far as CLONE_INTO_CGROUP (CLONE_ARGS_SIZE_VER2). */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size, cgroup;
};

#define FORKER_REQUEST_MAX 16384

#ifndef SYS_setns
#define SYS_setns 308
#endif

/* setns(2) into the namespaces of a child of the process of `pidfd`; false, with errno
 * set, if none would do. */
static bool join_through_a_child(int pidfd)
{
	char path[64], line[256];
	long pid = -1;
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
	FILE *info = fopen(path, "re");
	if (!info)
		return false;
	while (fgets(line, sizeof line, info))
		if (sscanf(line, "Pid: %ld", &pid) == 1)
			break;
	fclose(info);
	if (pid <= 0) {
		errno = EPERM;
		return false;
	}
	snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", pid, pid);
	FILE *children = fopen(path, "re");
	if (!children) {
		errno = EPERM;
		return false;
	}
	long child;
	bool joined = false;
	int err = EPERM;
	while (!joined && fscanf(children, "%ld", &child) == 1) {
		int fd = (int)syscall(SYS_pidfd_open, (pid_t)child, 0);
		if (fd < 0)
			continue;
		if (syscall(SYS_setns, fd, (unsigned long)plan.join_flags) == 0)
			joined = true;
		else
			err = errno;
		close(fd);
	}
	fclose(children);
	errno = err;
	return joined;
}

/*
 * `clib-init --exec FD`: start a process in a running container, as `docker exec`. FD is a
 * socket on which the spawner sends a plan (magic "CLIX"; the container's own plan with
 * the command, environment, working directory and user of the exec), the three stdio
 * descriptors and a pidfd of the container's first process. This process makes itself
 * non-dumpable first: nothing in the container may read its memory or descriptors
 * through /proc or ptrace once it has joined. It joins the container's cgroup, then all
 * of its namespaces at once (setns(2) on the pidfd), and clones the process that runs
 * the command, with CLONE_PARENT: the spawner's child, in the container's PID namespace.
 * That process sets up what a container's command gets (credentials, capabilities,
 * no_new_privs, the seccomp filter, rlimits, the working directory) and execs it. This
 * one answers "P" and the new process's pid (8 bytes) and exits; a failure before is a
 * report, as for a container ("<errno>\0<step>"). The new process's own failures are
 * reports too; its exec closes the socket.
 */
static int exec_main(int sock)
{
	report_fd = sock;
	if (prctl(PR_SET_DUMPABLE, 0, 0L, 0L, 0L) < 0)
		fail(errno, "make the exec process non-dumpable");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L) < 0)
		fail(errno, "set the parent-death signal");
	if (syscall(SYS_close_range, 3u, (unsigned)sock - 1, 0u) < 0 ||
	    syscall(SYS_close_range, (unsigned)sock + 1, ~0u, 0u) < 0)
		fail(errno, "close inherited descriptors");
	int stdio[3];
	size_t len = receive_plan(sock, stdio);
	parse_plan(plan_buf, len, &plan, EXEC_MAGIC);
	take_extra_fds(true);
	int pidfd = received_rootfs;
	if (pidfd < 0)
		fail(EBADMSG, "receive the container's pidfd");
	umask(0);
	for (uint32_t i = 0; i < plan.n_procs_files; i++)
		if (write_file(plan.procs_files[i], "0", 1) < 0)
			fail(errno, "join cgroup");
	if (syscall(SYS_setns, pidfd, (unsigned long)plan.join_flags) < 0) {
		/* Joining through a pidfd needs read access to it as ptrace would have: a
		 * non-dumpable PID 1 (init) refuses a caller without CAP_SYS_PTRACE in the
		 * host's namespace, as a non-root user is. Its children are in the very same
		 * namespaces: join through one of them. */
		if (errno != EPERM || !join_through_a_child(pidfd))
			fail(errno, "join the container's namespaces");
	}
	close(pidfd);
	/* No exit signal with CLONE_PARENT: the child gets this process's, SIGCHLD. */
	struct clone3_args args = {.flags = CLONE_PARENT};
	long pid = syscall(SYS_clone3, &args, sizeof args);
	if (pid < 0)
		fail(errno, "clone the exec process");
	if (pid == 0) {
		set_up_stdio(stdio);
		become_the_process();
		reset_signals();
		if (plan.no_new_privileges)
			install_seccomp();
		exec_command();
	}
	unsigned char answer[9] = {'P'};
	int64_t wide = (int64_t)pid;
	memcpy(answer + 1, &wide, sizeof wide);
	if (send(sock, answer, sizeof answer, MSG_NOSIGNAL) < 0)
		return SETUP_FAILED; /* the new process fails on its own: its socket is gone */
	return 0;
}

/* `clib-init --forker FD`: clone warm processes on request. A request on FD is a u64 of
 * CLONE_NEW* flags, then NUL-terminated paths of files the new process writes "0" to, to
 * move itself into its cgroup (v1 `tasks` files: a thread that moves itself takes no
 * global lock), with, optionally, the descriptor of a cgroup2 directory to clone the
 * process straight into (CLONE_INTO_CGROUP: no global lock either). A process that was
 * given paths or a directory sends "R" on its socket once it is in. The answer is an
 * i64, the pid (or -errno), with the spawner's end of the new process's socket.
 *
 * The forker is a small process, so a clone copies almost no page tables (a Python
 * process's clone costs over a millisecond here), and the new process is this helper
 * already: no execve. Started with CLONE_PARENT from the spawner's janitor, it is the
 * spawner's child, and so is every process it clones. `clib-init --forker FD --detached`
 * clones processes that do not die with their parent (see --detached above). */
static int forker_main(int fd)
{
	static char request[FORKER_REQUEST_MAX];
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L) < 0)
		return SETUP_FAILED;
	for (;;) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} control;
		struct iovec iov = {request, sizeof request - 1};
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = control.buf,
			.msg_controllen = sizeof control.buf,
		};
		ssize_t n;
		do
			n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		while (n < 0 && errno == EINTR);
		if (n == 0)
			return 0;
		if (n < (ssize_t)sizeof(uint64_t))
			return SETUP_FAILED;
		request[n] = '\0';
		int cgroup_fd = -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				memcpy(&cgroup_fd, CMSG_DATA(c), sizeof(int));
		uint64_t flags;
		memcpy(&flags, request, sizeof flags);
		const char *paths = request + sizeof flags;
		size_t paths_len = (size_t)n - sizeof flags;
		bool join = cgroup_fd >= 0 || paths_len > 0;
		int pair[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
			int err = errno;
			if (cgroup_fd >= 0)
				close(cgroup_fd);
			if (send_clone_answer(fd, -(int64_t)err, -1) < 0)
				return SETUP_FAILED;
			continue;
		}
		/* No exit signal with CLONE_PARENT (clone3 refuses one): the child gets the
		 * forker's own, SIGCHLD, as the spawner's child. */
		struct clone3_args args = {.flags = flags | CLONE_PARENT};
		if (cgroup_fd >= 0) {
			args.flags |= CLONE_INTO_CGROUP;
			args.cgroup = (uint64_t)cgroup_fd;
		}
		long pid = syscall(SYS_clone3, &args, sizeof args);
		if (pid == 0) {
			close(pair[0]);
			close(fd);
			if (cgroup_fd >= 0)
				close(cgroup_fd);
			report_fd = pair[1];
			for (size_t at = 0; at < paths_len; at += strlen(paths + at) + 1)
				if (paths[at] && write_file(paths + at, "0", 1) < 0)
					fail(errno, "join cgroup");
			if (join && send(pair[1], "R", 1, MSG_NOSIGNAL) < 0)
				_exit(SETUP_FAILED);
			warm_main(pair[1], (unsigned long)flags);
		}
		int err = errno;
		if (cgroup_fd >= 0)
			close(cgroup_fd);
		close(pair[1]);
		int rc = send_clone_answer(fd, pid < 0 ? -(int64_t)err : (int64_t)pid,
					   pid < 0 ? -1 : pair[0]);
		close(pair[0]);
		if (rc < 0) {
			if (pid > 0)
				kill((pid_t)pid, SIGKILL); /* the spawner reaps it */
			return SETUP_FAILED;
		}
	}
}

int main(int argc, char **argv)
{
	unsigned long long fd, flags;
	if (argc == 2 && strcmp(argv[1], "--dump") == 0)
		return dump_main();
	if (argc == 3 && strcmp(argv[1], "--exec") == 0) {
		if (!parse_number(argv[2], INT_MAX, &fd) || fd < 3)
			return SETUP_FAILED;
		if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
			return SETUP_FAILED;
		return exec_main((int)fd);
	}
	if ((argc == 3 || (argc == 4 && strcmp(argv[3], "--detached") == 0)) &&
	    strcmp(argv[1], "--forker") == 0) {
		/* Its clones inherit it: a container the OCI command line creates in a user
		 * namespace outlives the command. */
		detached = argc == 4;
		if (!parse_number(argv[2], INT_MAX, &fd))
			return SETUP_FAILED;
		return forker_main((int)fd);
	}
	if (argc == 4 && strcmp(argv[3], "--detached") == 0) {
		detached = true;
		argc = 3;
	}
	if (argc != 3 || !parse_number(argv[1], INT_MAX, &fd) ||
	    !parse_number(argv[2], ULONG_MAX, &flags)) {
		fputs("usage: clib-init FD FLAGS | clib-init --forker FD | clib-init --exec FD | "
		      "clib-init --dump < plan\n",
		      stderr);
		return SETUP_FAILED;
	}
	int sock = (int)fd;
	/* Stay clear of 0..2, which the container's stdio replaces, and close at the exec. */
	if (sock < 3) {
		sock = fcntl(sock, F_DUPFD_CLOEXEC, 3);
		if (sock < 0) {
			perror("clib-init: socket");
			return SETUP_FAILED;
		}
	} else if (fcntl(sock, F_SETFD, FD_CLOEXEC) < 0) {
		perror("clib-init: socket");
		return SETUP_FAILED;
	}
	warm_main(sock, (unsigned long)flags);
}
