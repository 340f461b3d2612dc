"""Helpers shared by the GridFTP mount and mirror tests.

- public_tree(layout): an origin tree (origintree) in a fresh directory that
  the GridFTP server's nobody sessions can read (under /tmp, dirs 0755,
  files 0644); the same directory can be served by nginx too.
- listable_snapshot(root): origintree.snapshot restricted to what a GridFTP
  source can address: the Globus server drops non-ASCII bytes from control
  commands, so a directory with such a name cannot be listed through it
  (its own entry, in its parent's MLSD listing, is still there).
- restart_gridftp(g) / restart_nginx(ng): start a stopped origin again on
  the port it had, so a mount that names it sees the same source come back.
"""
import os
import shutil
import stat

import gridftp_origin
import origin as originlib
import origintree
from gridftp_origin import make_root


def public_tree(layout, empty_dirs=("empty_dir", "RB1810002/empty")):
    root = make_root("gftp-tree-")
    try:
        origintree.make_tree(root, layout, empty_dirs=empty_dirs)
        for dirpath, dirnames, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for n in filenames:
                os.chmod(os.path.join(dirpath, n), 0o644)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def is_ascii(rel):
    return all(ord(ch) < 128 for ch in rel)


def listable_snapshot(root):
    """snapshot(root) without the entries below a non-ASCII directory."""
    snap = origintree.snapshot(root)
    return {rel: v for rel, v in snap.items()
            if is_ascii(os.path.dirname(rel))}


def walk_snapshot(mnt):
    """Like origintree.snapshot for a mount, without descending into
    non-ASCII directories (a GridFTP source cannot list them)."""
    out = {}

    def visit(rel_dir):
        for name in os.listdir(os.path.join(mnt, rel_dir)):
            rel = os.path.join(rel_dir, name) if rel_dir else name
            st = os.lstat(os.path.join(mnt, rel))
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", None, None)
                if is_ascii(rel):
                    visit(rel)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("f", st.st_size, int(st.st_mtime))
            else:
                out[rel] = ("?", None, None)
    visit("")
    return out


def restart_gridftp(g):
    """Starts the GridFTP origin g again (after g.kill() or g.stop()) on
    the port it had."""
    port = g.port
    g.stop()
    saved = gridftp_origin.free_port
    gridftp_origin.free_port = lambda: port
    try:
        g.start()
    finally:
        gridftp_origin.free_port = saved
    assert g.port == port
    return g


def restart_nginx(ng):
    """Starts the nginx origin ng again (after ng.stop()) on its old port."""
    port = ng.port
    ng.stop()
    saved = originlib.free_port
    originlib.free_port = lambda: port
    try:
        ng.start()
    finally:
        originlib.free_port = saved
    assert ng.port == port
    return ng
