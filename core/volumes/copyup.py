"""Copy the image's files at a volume's destination into the new, empty volume, as
docker does on a volume's first use. The image's side is read through descriptors
resolved inside the container's rootfs (:mod:`pinnace.rootfs`), and each entry is
opened with ``O_NOFOLLOW`` relative to its directory, so no symlink in the image can
make this read (or write) anything outside the rootfs and the volume."""

from __future__ import annotations

import contextlib
import errno
import os
import stat


def image_dir(rootfs: str, target: str) -> int | None:
    """A descriptor of the directory ``target`` inside the container's ``rootfs`` (symlinks
    resolved inside it), or None when the image has no directory there."""
    from pinnace.rootfs import open_in, opened_root

    with opened_root(rootfs) as root:
        try:
            return open_in(root, target, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise


def copy_up(src: int, volume_dir: str) -> bool:
    """Copy the directory open as ``src`` (see :func:`image_dir`) into ``volume_dir`` when
    that is empty, with owners, modes and times; return whether it was copied."""
    dst = os.open(volume_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if os.listdir(dst):
            return False
        _copy_tree(src, dst)
        _copy_attributes(os.fstat(src), dst)
    finally:
        os.close(dst)
    return True


def _copy_tree(src: int, dst: int) -> None:
    for entry in os.scandir(src):
        st = entry.stat(follow_symlinks=False)
        name = entry.name
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            sub_src = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=src)
            try:
                sub_dst = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=dst)
                try:
                    _copy_tree(sub_src, sub_dst)
                    _copy_attributes(st, sub_dst)
                finally:
                    os.close(sub_dst)
            finally:
                os.close(sub_src)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(src, dst, name, st)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            with contextlib.suppress(NotImplementedError, OSError):
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst,
                         follow_symlinks=False)
        else:  # FIFOs and device nodes, as they are
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)


def _copy_file(src: int, dst: int, name: str, st: os.stat_result) -> None:
    fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src)
    try:
        fout = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600, dir_fd=dst)
        try:
            _copy_data(fin, fout, st.st_size)
            _copy_attributes(st, fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_data(fin: int, fout: int, size: int) -> None:
    """``size`` bytes, in the kernel: ``copy_file_range`` (reflinks where it can), else
    ``sendfile`` (across file systems on kernels that refuse that)."""
    left = size
    try:
        while left > 0:
            done = os.copy_file_range(fin, fout, left)
            if done == 0:
                return
            left -= done
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while left > 0:
        done = os.sendfile(fout, fin, None, left)
        if done == 0:
            return
        left -= done


def _copy_attributes(st: os.stat_result, fd: int) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
