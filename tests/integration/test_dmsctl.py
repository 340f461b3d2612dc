"""build/dmsctl acl lint / check against real local users and groups.

Users and groups get unique names, are created with useradd/groupadd and
removed at teardown (userdel -r, groupdel).  Needs root and build/dmsctl."""
import os
import shutil
import subprocess
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DMSCTL = os.path.join(ROOT, "build", "dmsctl")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd)"),
    pytest.mark.skipif(not os.access(DMSCTL, os.X_OK),
                       reason=f"{DMSCTL} is not built (run make)"),
    pytest.mark.skipif(not shutil.which("useradd"), reason="useradd missing"),
]


def run(*args):
    return subprocess.run([DMSCTL, *args], capture_output=True, text=True,
                          timeout=60)


def sh(*args):
    subprocess.run(list(args), check=True, capture_output=True, timeout=60)


@pytest.fixture
def people():
    """Group G; user A with G as a supplementary group; user B in no
    special group; user C with G as primary group."""
    tag = uuid.uuid4().hex[:8]
    g, a, b, c = (f"dq{x}{tag}" for x in "gabc")
    made_users, made_groups = [], []
    try:
        sh("groupadd", g)
        made_groups.append(g)
        for user, extra in ((a, ["-G", g]), (b, []), (c, ["-g", g])):
            sh("useradd", "-m", "-s", "/usr/sbin/nologin", *extra, user)
            made_users.append(user)
        yield {"g": g, "a": a, "b": b, "c": c}
    finally:
        for user in made_users:
            subprocess.run(["userdel", "-r", user], capture_output=True,
                           timeout=60)
        for group in made_groups:
            subprocess.run(["groupdel", group], capture_output=True,
                           timeout=60)


def write(tmp_path, text, name="authdb"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_lint_ok(tmp_path):
    f = write(tmp_path, """# comment
u * /archive/private -rl /archive rl   # all but private
u = /home/@=/ a
g rb1810001 /shared/RB1810001 rl
u alice /shared/RB1810001 \\
    a-d
""")
    r = run("acl", "lint", f)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok: 4 rules\n"
    assert r.stderr == ""


def test_lint_warning_still_ok(tmp_path):
    f = write(tmp_path, "u * /x rl /x/y -r\n")
    r = run("acl", "lint", f)
    assert r.returncode == 0
    assert r.stdout.startswith("ok: 1 rules")
    assert f"{f}:1: warning: path '/x/y' never decides" in r.stderr


def test_lint_bad(tmp_path):
    f = write(tmp_path, """u * /ok r
x * /a r
u alice /a
u alice relative r
u alice /a rz
u * /a r -rl /archive/private
u alice /a/../b r
g * /a r
""")
    r = run("acl", "lint", f)
    assert r.returncode == 1
    assert "ok:" not in r.stdout
    lines = r.stderr.splitlines()
    want = [
        (2, "unknown rule type 'x'"),
        (3, "missing privileges for path '/a'"),
        (4, "path 'relative' is not absolute"),
        (5, "bad privilege letter 'z'"),
        (6, "expected a path, found privileges '-rl'"),
        (7, "not normalized"),
        (8, "group rule needs a group name"),
    ]
    assert len(lines) == len(want), r.stderr
    for line, (n, text) in zip(lines, want):
        assert line.startswith(f"{f}:{n}: "), line
        assert text in line, line


def test_lint_missing_file(tmp_path):
    r = run("acl", "lint", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert "No such file" in r.stderr


def test_usage():
    assert run().returncode == 2
    assert run("acl").returncode == 2
    assert run("acl", "frob").returncode == 2
    assert run("acl", "check", "onlyuser").returncode == 2


def check(f, user, path):
    r = run("acl", "check", "-r", f, user, path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    return lines[0], lines[1:]


def test_check_users_and_groups(tmp_path, people):
    g, a, b, c = people["g"], people["a"], people["b"], people["c"]
    rules = f"""u * /archive/private -rl /archive rl
u = /home/@=/ a
g {g} /shared/{g} rl
u {a} /shared/{g} a-d
"""
    f = write(tmp_path, rules)
    text = rules.splitlines()

    verdict, details = check(f, a, f"/shared/{g}/data")
    assert verdict == "lrwin"
    assert f"  d: denied by {f}:4: {text[3]}" in details
    assert f"  w: granted by {f}:4: {text[3]}" in details
    assert f"  r: granted by {f}:3: {text[2]}" in details   # via group

    verdict, details = check(f, b, f"/shared/{g}/data")
    assert verdict == "none"
    assert "  r: not granted (no rule)" in details

    verdict, details = check(f, c, f"/shared/{g}")        # primary group
    assert verdict == "lr"
    assert f"  l: granted by {f}:3: {text[2]}" in details

    verdict, _ = check(f, b, "/shared")
    assert verdict == "none"
    verdict, details = check(f, c, "/shared")
    assert verdict == "lr"
    assert "  l: implicit (a path below is accessible)" in details

    verdict, details = check(f, a, f"/home/{a}/x")
    assert verdict == "lrwidn"
    assert f"  n: granted by {f}:2: {text[1]}" in details
    assert check(f, a, f"/home/{b}")[0] == "none"
    assert check(f, b, "/home")[0] == "lr"

    verdict, details = check(f, b, "/archive/private/x")
    assert verdict == "none"
    assert f"  l: denied by {f}:1: {text[0]}" in details
    assert check(f, b, "/archive/privatex")[0] == "lr"
    assert check(f, b, "/archives")[0] == "none"


def test_check_errors(tmp_path, people):
    f = write(tmp_path, "u * / rl\n")
    r = run("acl", "check", "-r", f, "dq-no-such-user-x", "/")
    assert r.returncode == 1
    assert "no such user" in r.stderr
    r = run("acl", "check", "-r", f, people["a"], "/a/../b")
    assert r.returncode == 1
    assert "not a normalized absolute path" in r.stderr
    bad = write(tmp_path, "u * /\n", "bad")
    r = run("acl", "check", "-r", bad, people["a"], "/")
    assert r.returncode == 1
    assert f"{bad}:1: missing privileges" in r.stderr
