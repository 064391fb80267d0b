# POSIX conformance checks, run as an unprivileged user (uid/gid 1000, groups 1000 and 2000) in a
# directory prepared by test/fuse/conformance.test.ts, once on the host's file system and once on
# our mount: every check prints its outcome (values or an errno name) and the two must agree.
# What conformance suites (pjdfstest and the like) look at: ownership of new files, chmod/chown
# rules, ctime, link counts, rename edge cases, ENAMETOOLONG, sticky and setgid directories,
# utimensat with UTIME_NOW/UTIME_OMIT, O_EXCL, truncate, mkfifo/mknod, unlink of open files,
# permission checks, setuid cleared by a write, `.` and `..` in listings, nanosecond times.
import errno
import json
import os
import stat
import subprocess
import sys
import time

base = sys.argv[1]
out = {}


def check(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))


def p(*parts):
    return os.path.join(base, *parts)


def mode(path):
    return oct(os.lstat(path).st_mode)


def owner(path):
    st = os.lstat(path)
    return [st.st_uid, st.st_gid]


def times(path):
    # As strings: nanoseconds since 1970 do not fit a JSON number exactly.
    st = os.lstat(path)
    return [str(st.st_atime_ns), str(st.st_mtime_ns)]


def touch(path, data=b""):
    with open(path, "wb") as f:
        f.write(data)


me = [os.getuid(), os.getgid()]

# Ownership of what the caller makes.
check("prep_f", lambda: touch(p("f"), b"hello"))
check("prep_d", lambda: os.mkdir(p("d")))
check("prep_l", lambda: os.symlink("f", p("l")))
check("owner_file", lambda: owner(p("f")) == me)
check("owner_dir", lambda: owner(p("d")) == me)
check("owner_symlink", lambda: owner(p("l")) == me)

# chmod and chown of one's own file.
check("chmod_own", lambda: (os.chmod(p("f"), 0o640), mode(p("f")))[1])
check("chown_own_group", lambda: (os.chown(p("f"), -1, 2000), owner(p("f")))[1])
check("chown_foreign_group", lambda: os.chown(p("f"), -1, 3000))
check("chown_to_root", lambda: os.chown(p("f"), 0, -1))
check("chmod_foreign", lambda: os.chmod(p("rootfile"), 0o777))


def ctime_moves():
    before = os.lstat(p("f")).st_ctime_ns
    time.sleep(0.02)
    os.chmod(p("f"), 0o644)
    return os.lstat(p("f")).st_ctime_ns > before


check("ctime_on_chmod", ctime_moves)

# truncate, ftruncate.
check("truncate_own", lambda: (os.truncate(p("f"), 2), os.lstat(p("f")).st_size)[1])


def ftruncate_readonly():
    fd = os.open(p("f"), os.O_RDONLY)
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


check("ftruncate_readonly", ftruncate_readonly)

# Link counts and hard links (protected_hardlinks refuses a link to someone else's file).
check("prep_g", lambda: touch(p("g"), b"g"))
check("link_own", lambda: (os.link(p("g"), p("g2")), os.lstat(p("g")).st_nlink)[1])
check("link_same_ino", lambda: os.lstat(p("g")).st_ino == os.lstat(p("g2")).st_ino)
check("link_foreign_protected", lambda: os.link(p("rootfile"), p("stolen")))
check("dir_nlink", lambda: (os.mkdir(p("d", "sub")), os.lstat(p("d")).st_nlink)[1])

# rename edge cases.
check("prep_r1", lambda: os.mkdir(p("r1")))
check("prep_r2", lambda: os.mkdir(p("r2")))
check("prep_r2x", lambda: touch(p("r2", "x")))
check("prep_rf", lambda: touch(p("rf")))
check("rename_own_dir", lambda: (os.rename(p("r1"), p("r1b")), os.path.isdir(p("r1b")))[1])
check("rename_file_over_dir", lambda: os.rename(p("rf"), p("r1b")))
check("rename_dir_over_file", lambda: os.rename(p("r1b"), p("rf")))
check("rename_dir_over_nonempty", lambda: os.rename(p("r1b"), p("r2")))
check("rename_into_itself", lambda: os.rename(p("r2"), p("r2", "inner")))
check("rename_onto_itself", lambda: (os.rename(p("rf"), p("rf")), os.path.exists(p("rf")))[1])
check("rename_hardlink_pair", lambda: (os.rename(p("g"), p("g2")), sorted(os.listdir(base)).count("g"))[1])

# Names.
check("name_too_long", lambda: touch(p("n" * 256)))
check("name_255_ok", lambda: (touch(p("m" * 255)), True)[1])


def excl():
    os.close(os.open(p("f"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


check("o_excl_existing", excl)

# Sticky directory (prepared: /sticky 1777 with a root-owned file).
check("sticky_unlink_foreign", lambda: os.unlink(p("sticky", "rootowned")))
check("sticky_unlink_own", lambda: (touch(p("sticky", "mine")), os.unlink(p("sticky", "mine")), True)[2])

# setgid directory: group and bit inherited.
check("prep_sg", lambda: os.mkdir(p("sg")))
check("prep_sg_chown", lambda: os.chown(p("sg"), -1, 2000))
check("prep_sg_chmod", lambda: os.chmod(p("sg"), 0o2775))
check("prep_sg_file", lambda: touch(p("sg", "file")))
check("prep_sg_dir", lambda: os.mkdir(p("sg", "dir")))
check("setgid_file_group", lambda: owner(p("sg", "file"))[1])
check("setgid_dir_group", lambda: owner(p("sg", "dir"))[1])
check("setgid_dir_bit", lambda: mode(p("sg", "dir")))

# utimensat: UTIME_OMIT leaves a side alone (touch -a / -m use it), UTIME_NOW, exact ns.
check("prep_t", lambda: touch(p("t")))
check("prep_t_utime", lambda: os.utime(p("t"), ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321)))
check("utime_ns_exact", lambda: times(p("t")))
check("prep_touch_a", lambda: subprocess.run(["touch", "-a", "-d", "@1200000000", p("t")]).returncode)
check("utime_omit_mtime", lambda: times(p("t")))
check("prep_touch_m", lambda: subprocess.run(["touch", "-m", "-d", "@1300000000", p("t")]).returncode)
check("utime_omit_atime", lambda: times(p("t")))
check("utime_now", lambda: (os.utime(p("t")), abs(os.lstat(p("t")).st_mtime - time.time()) < 60)[1])
check("utime_foreign_now", lambda: os.utime(p("rootfile")))
check("utime_foreign_set", lambda: os.utime(p("rootfile"), (1, 1)))

# FIFOs and device nodes (creating a device needs CAP_MKNOD).
check("mkfifo", lambda: (os.mkfifo(p("fifo")), stat.S_ISFIFO(os.lstat(p("fifo")).st_mode))[1])
check("mknod_chr_unprivileged", lambda: os.mknod(p("chr"), 0o600 | stat.S_IFCHR, os.makedev(1, 3)))


# Unlink of an open file: still readable and writable through the descriptor.
def unlink_open():
    touch(p("u"), b"abc")
    fd = os.open(p("u"), os.O_RDWR)
    try:
        os.unlink(p("u"))
        os.pwrite(fd, b"XYZ", 3)
        return [os.fstat(fd).st_nlink, os.pread(fd, 10, 0).decode(), os.path.exists(p("u"))]
    finally:
        os.close(fd)


check("unlink_open_file", unlink_open)


# Permission checks for a non-root caller.
def no_read():
    touch(p("secret"), b"s")
    os.chmod(p("secret"), 0o000)
    with open(p("secret"), "rb") as f:
        return f.read()


check("read_mode_000", no_read)
check("write_foreign_0644", lambda: touch(p("rootfile")))
check("list_foreign_0700", lambda: os.listdir(p("private")))


# A write clears setuid (the kernel asks the file system to).
def suid_cleared():
    touch(p("suid"), b"#!/bin/sh\n")
    os.chmod(p("suid"), 0o4755)
    with open(p("suid"), "ab") as f:
        f.write(b"echo\n")
    return mode(p("suid"))


check("write_clears_setuid", suid_cleared)

# `.` and `..` in a listing of the root and of a directory.
check("ls_a_root", lambda: sorted(subprocess.run(["ls", "-a", base], capture_output=True, text=True, check=True).stdout.split())[:2])
check("ls_a_dir", lambda: sorted(subprocess.run(["ls", "-a", p("d")], capture_output=True, text=True, check=True).stdout.split())[:2])

# Directory removal rules.
check("rmdir_nonempty", lambda: os.rmdir(p("d")))
check("unlink_dir", lambda: os.unlink(p("d")))
check("rmdir_file", lambda: os.rmdir(p("f")))

print(json.dumps(out, sort_keys=True))
