"""Running as a service, from the source tree: options from a config file,
--help and --version, refusals before mounting, and SIGTERM (what systemd
sends) with checks in flight: unmounted, threads joined, exit 0."""
import json
import os
import shutil
import signal
import subprocess
import time

from conftest import QUANTFS, STORIES_GGUF, read_all


def run(*args):
    return subprocess.run([QUANTFS, *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_option_with_its_default_and_version():
    h = run("--help")
    assert h.returncode == 0
    src = open(os.path.join(os.path.dirname(__file__), "..", "fs", "main.c")).read()
    import re
    names = set(re.findall(r'QOPT\("([a-z_]+)[=%"]', src)) | set(re.findall(r'\bOPT\("([a-z_]+)=', src))
    assert len(names) > 12
    for n in names - {"workers"}:  # workers= is the old name of threads=
        line = [l for l in h.stdout.splitlines() if re.search(r"-o %s\b" % n, l)]
        assert line, n
    for n in ("cache_size", "hot_size", "threads", "readahead", "timeout", "check_interval", "rescan", "settle",
              "check_jobs", "views"):
        i = [k for k, l in enumerate(h.stdout.splitlines()) if "-o %s" % n in l][0]
        assert "default" in " ".join(h.stdout.splitlines()[i:i + 3]), n
    manpage = open(os.path.join(os.path.dirname(__file__), "..", "man", "quantfs.1")).read()
    for n in names - {"workers"}:
        assert re.search(r"\\-o %s\b" % n, manpage), "quantfs.1 does not document -o " + n
    v = run("--version")
    assert v.returncode == 0 and v.stdout.startswith("quantfs 0.1.0") and "FUSE library version" in v.stdout


def test_config_file(mount_factory, tmp_path):
    src = tmp_path / "src" / "st"
    src.mkdir(parents=True)
    shutil.copyfile(STORIES_GGUF, src / "st.gguf")
    conf = tmp_path / "q.conf"
    conf.write_text("# views and cache\nviews = q8_0, q4_k_m  q6_k   # three\ncache_size = 96M\n\ntimeout=2\n")
    m = mount_factory(tmp_path / "src", "config=%s" % conf)
    assert sorted(os.listdir(m.path("st"))) == ["q4_k_m", "q6_k", "q8_0"]
    assert m.stats()["memory"]["budget"] == 96 << 20
    m.umount()
    # the command line wins over the file
    m = mount_factory(tmp_path / "src", "config=%s" % conf, "views=fp16")
    assert os.listdir(m.path("st")) == ["fp16"]
    m.umount()
    # a bad line: file and line named, nothing mounted, status 1
    bad = tmp_path / "bad.conf"
    bad.write_text("views = q8_0\nCache Size = 1G\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run(str(tmp_path / "src"), str(mnt), "-o", "config=%s" % bad)
    assert r.returncode == 1 and r.stderr.strip() == "quantfs: config %s:2: 'Cache Size' is not an option name" % bad
    assert not os.path.ismount(mnt)
    r = run(str(tmp_path / "src"), str(mnt), "-o", "config=%s" % (tmp_path / "none.conf"))
    assert r.returncode == 1 and "No such file" in r.stderr


def test_refusals_before_mounting(tmp_path):
    (tmp_path / "src" / "m").mkdir(parents=True)
    for src, mnt in ((tmp_path / "src", tmp_path / "src" / "m"), (tmp_path / "src" / "m", tmp_path / "src")):
        r = run(str(src), str(mnt))
        assert r.returncode == 1 and "overlap" in r.stderr, r.stderr
        assert not os.path.ismount(mnt)
    r = run(str(tmp_path / "src"), str(tmp_path / "x"), "-o", "bogus_option=1")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr


BAD_VALUES = ["check_jobs=-1", "check_jobs=0", "threads=1e9", "threads=0", "threads=+4", "threads= 4", "workers=-2",
              "timeout=nan", "timeout=inf", "timeout=-1", "timeout=1e9", "readahead=-5", "readahead=99999",
              "settle=-1", "settle=1h", "max_fds=0", "max_fds=2", "rescan=-1", "rescan=86401", "source_timeout=99999",
              "check_interval=0", "read_ahead_kb=2000000", "cache_size=-1", "cache_size=0", "cache_size=100T",
              "cache_size=1X", "hot_size=-1", "hot_size=1T", "cache_dir_size=-1", "cache_dir_size=0"]


def test_option_values_out_of_range_are_refused(tmp_path):
    """Every numeric option has a range: a value outside it, signed, or with
    anything after the number stops the mount with one line naming it
    (fuse_opt's %u took "-1" as 4294967295 and "1e9" as 1)."""
    (tmp_path / "src").mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for o in BAD_VALUES:
        r = run(str(tmp_path / "src"), str(mnt), "-o", o)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("quantfs: " + o), (o, r.stderr)
        assert not os.path.ismount(mnt), o
    # and in range, in a config file too: the mount comes up
    conf = tmp_path / "ok.conf"
    conf.write_text("threads = 3\ntimeout = 0.5\ncheck_jobs = 2\nsettle = 0\nread_ahead_kb = 0\n")
    r = run(str(tmp_path / "src"), str(mnt), "-o", "config=%s" % conf)
    try:
        assert r.returncode == 0 and os.path.ismount(mnt), r.stderr
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])


def test_sigterm_with_checks_in_flight(tmp_path):
    import numpy as np
    from gguf_writer import llama_kvs, write_gguf
    src = tmp_path / "src"
    # 32 MB of random weights: the checker faults view pages in through its
    # mmap the whole time it runs, so SIGTERM finds it waiting on the mount
    w = np.random.default_rng(7).standard_normal(4096 * 2048, dtype=np.float32).tobytes()
    for i in range(3):
        (src / ("m%d" % i)).mkdir(parents=True)
        write_gguf(src / ("m%d" % i) / "m.gguf", llama_kvs(4096), [("blk.0.ffn_up.weight", [4096, 2048], 0, w)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.Popen([QUANTFS, str(src), str(mnt), "-f", "-o", "check,check_jobs=1"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 20
        while not os.path.ismount(mnt) and time.time() < deadline:
            time.sleep(0.02)
        for i in range(3):  # a lookup starts each model's check; one runs, two wait for the slot
            os.stat(mnt / ("m%d" % i))
        # SIGTERM while a checker is reading views through the mount
        import json
        deadline = time.time() + 30
        while True:
            kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
            with open(mnt / ".quantfs" / "stats") as f:
                reads = json.load(f)["reads"]
            if kids and reads >= 50:
                break
            assert time.time() < deadline, "no checker started"
            time.sleep(0.01)
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=60)[0]
        assert p.returncode == 0, out
        assert not os.path.ismount(mnt)
        assert "runtime error" not in out and "Sanitizer" not in out, out
    finally:
        if p.poll() is None:
            p.kill()
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)])


def test_directories_follow_source_permissions_under_allow_other(mount_factory, tmp_path):
    """Run by root with allow_other, read by nobody: a model whose source
    directory is 0700 stays private, a 0755 one is readable; files keep
    their source modes minus write bits."""
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root (the daemon) and another user (the reader)")
    src = tmp_path / "src"
    for name, mode in (("open", 0o755), ("private", 0o700)):
        (src / name).mkdir(parents=True)
        shutil.copyfile(STORIES_GGUF, src / name / "m.gguf")
        os.chmod(src / name / "m.gguf", 0o644)
        os.chmod(src / name, mode)
    os.chmod(src, 0o755)
    # pytest's directories are 0700: let the reader through to the mount
    saved = [(d, os.stat(d).st_mode & 0o777) for d in (tmp_path, tmp_path.parent, tmp_path.parent.parent)]
    for d, mode in saved:
        os.chmod(d, mode | 0o011)
    try:
        check_as_nobody(mount_factory(src, "allow_other"))
    finally:
        for d, mode in saved:
            os.chmod(d, mode)


def check_as_nobody(m):
    assert os.stat(m.path("private")).st_mode & 0o777 == 0o500
    assert os.stat(m.path("open", "q8_0")).st_mode & 0o777 == 0o555
    assert os.stat(m.path("open", "q8_0", "m.gguf")).st_mode & 0o777 == 0o444

    def as_nobody(*cmd):
        return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd],
                              capture_output=True, timeout=60)
    ok = as_nobody("cat", m.path("open", "q8_0", "m.gguf"))
    assert ok.returncode == 0 and len(ok.stdout) == os.stat(m.path("open", "q8_0", "m.gguf")).st_size
    for p in (m.path("private"), m.path("private", "q8_0", "m.gguf")):
        r = as_nobody("cat", p) if p.endswith(".gguf") else as_nobody("ls", p)
        assert r.returncode != 0 and b"Permission denied" in r.stderr, (p, r)


def test_symlinks_stay_inside_the_source_root(mount_factory, tmp_path):
    """A symlink that resolves outside the source root is neither listed nor
    served (a model directory, a loose file or a file in a model), one
    inside it is; a file swapped for such a link while mounted serves
    nothing of its target; -o follow_symlinks serves them all."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = b"root's secret\n" * 100
    (outside / "secret.txt").write_bytes(secret)
    shutil.copyfile(STORIES_GGUF, outside / "secret.gguf")
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    shutil.copyfile(STORIES_GGUF, src / "m" / "m.gguf")
    (src / "m" / "README.md").write_text("readme\n")
    (src / "notes").mkdir()
    (src / "notes" / "inside.txt").write_text("inside\n")
    os.symlink("../notes/inside.txt", src / "m" / "inside.txt")
    os.symlink(outside / "secret.txt", src / "m" / "leak.txt")
    os.symlink(outside / "secret.gguf", src / "loose.gguf")
    os.symlink(outside, src / "linked")
    os.symlink("m/m.gguf", src / "inlink.gguf")
    m = mount_factory(src, "settle=100")
    assert sorted(os.listdir(m.path())) == [".quantfs", "inlink", "m"]
    assert sorted(os.listdir(m.path("m", "f32"))) == ["README.md", "inside.txt", "m.gguf"]
    assert read_all(m.path("m", "f32", "inside.txt")) == b"inside\n"
    assert read_all(m.path("inlink", "f32", "inlink.gguf")) == read_all(STORIES_GGUF)
    # swapped while mounted: after the swap, no read returns the target
    os.unlink(src / "m" / "README.md")
    os.symlink(outside / "secret.txt", src / "m" / "README.md")
    for _ in range(30):
        try:
            got = read_all(m.path("m", "f32", "README.md"))
        except OSError:
            got = None
        assert got != secret and got in (None, b"readme\n")
        time.sleep(0.1)
    m.expect_log(r"not serving .*: it resolves (to .*, )?outside the source root")
    m2 = mount_factory(src, "follow_symlinks")
    assert sorted(os.listdir(m2.path())) == [".quantfs", "inlink", "linked", "loose", "m"]
    assert read_all(m2.path("m", "f32", "leak.txt")) == secret
    assert read_all(m2.path("m", "f32", "README.md")) == secret


def test_man_pages_render_without_warnings():
    man = os.path.join(os.path.dirname(__file__), "..", "man")
    pages = sorted(f for f in os.listdir(man) if f.endswith((".1", ".5")))
    assert pages == ["quantfs-check.1", "quantfs-warm.1", "quantfs.1", "quantfs.conf.5"]
    for p in pages:
        r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(man, p)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, (p, r.stderr)


def test_cache_dir_must_be_the_daemons_own(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for mode, owner in ((0o777, None), (0o770, None), (0o700, "nobody")):
        c = tmp_path / ("c%o%s" % (mode, owner or ""))
        c.mkdir()
        os.chmod(c, mode)
        if owner:
            if os.geteuid() != 0:
                continue
            shutil.chown(c, owner)
        r = run(str(src), str(mnt), "-o", "cache_dir=%s" % c)
        assert r.returncode == 1 and "must belong to the daemon's user" in r.stderr, (mode, owner, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and not os.path.ismount(mnt)
    # and so must every directory in it: a fan-out directory another user
    # may write, or owns, or a link in its place, would let entries in
    for how in ("writable", "owner", "link"):
        c = tmp_path / ("sub-" + how)
        c.mkdir(mode=0o700)
        os.chmod(c, 0o700)
        r = run(str(src), str(mnt), "-o", "cache_dir=%s" % c, "-o", "settle=0")  # a first mount makes the layout
        assert r.returncode == 0, r.stderr
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
        sub = c / "qfs1" / "3a"
        if how == "writable":
            os.chmod(sub, 0o777)
        elif how == "owner":
            if os.geteuid() != 0:
                continue
            shutil.chown(sub, "nobody")
        else:
            os.rmdir(sub)
            (tmp_path / "elsewhere").mkdir(exist_ok=True)
            os.symlink(tmp_path / "elsewhere", sub)
        r = run(str(src), str(mnt), "-o", "cache_dir=%s" % c)
        assert r.returncode == 1 and "%s is not a directory of the daemon's user" % sub in r.stderr, (how, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and not os.path.ismount(mnt)


def test_log_lines_are_whole_and_escaped(mount_factory, tmp_path):
    """A name from the source cannot forge a log line or send terminal
    escapes: control characters are written as \\xNN."""
    src = tmp_path / "src"
    evil = "evil\nquantfs: error: forged\x1b[31m"
    (src / evil).mkdir(parents=True)
    (src / evil / "m.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 16)  # a broken header
    m = mount_factory(src)
    m.expect_log(r"evil\\x0aquantfs: error: forged\\x1b\[31m")
    os.listdir(m.path(evil))
    m.umount()
    out = m.output()
    assert "\x1b" not in out and not any(l.startswith("quantfs: error: forged") for l in out.splitlines()), out
    assert "evil\\x0aquantfs: error: forged\\x1b[31m" in out, out


def test_refusals_at_mount_reach_the_terminal_and_the_log_file(tmp_path):
    """Started in the background (no -f), the daemon says on its stderr,
    before it detaches, what the first scan refused or found nothing in;
    MOUNT/.quantfs/log keeps those lines and later ones."""
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(STORIES_GGUF, outside / "x.gguf")
    src = tmp_path / "src"
    (src / "linked").mkdir(parents=True)
    os.symlink(outside / "x.gguf", src / "linked" / "x.gguf")
    (src / "broken").mkdir()
    (src / "broken" / "b.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    # a checkpoint still being copied: its index names a shard not there yet
    (src / "partial").mkdir()
    (src / "partial" / "config.json").write_text("{}")
    (src / "partial" / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}))
    (src / "partial" / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 16)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run([QUANTFS, str(src), str(mnt)], capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == 0, r.stderr
        assert os.path.ismount(mnt)
        assert "warning: not serving %s" % (src / "linked" / "x.gguf") in r.stderr, r.stderr
        assert "follow_symlinks" in r.stderr
        # one line counts what it serves and what it hid, by reason
        assert ("quantfs: serving 1 model(s) from %s; hid 2: 1 outside the source root (symlinks), 1 incomplete "
                "(shown once complete); details above and in %s/.quantfs/log" % (src, mnt)) in r.stderr, r.stderr
        assert sorted(os.listdir(mnt / ".quantfs")) == ["log", "models", "stats"]
        # headers are parsed on first use: the malformed file's refusal
        # (only its f32 view, and why) reaches the log file then
        assert os.listdir(mnt / "broken") == ["f32"]
        log = read_all(mnt / ".quantfs" / "log").decode()
        assert "not serving %s" % (src / "linked" / "x.gguf") in log
        assert "b.gguf" in log and "serving 1 model(s)" in log, log
        assert os.stat(mnt / ".quantfs" / "log").st_mode & 0o777 == 0o440
        # later messages (a model added while mounted) reach the file too
        (src / "late").mkdir()
        shutil.copyfile(STORIES_GGUF, src / "late" / "late.gguf")
        deadline = time.time() + 30
        while "model 'late' appeared" not in read_all(mnt / ".quantfs" / "log").decode():
            assert time.time() < deadline, read_all(mnt / ".quantfs" / "log").decode()
            time.sleep(0.2)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
    # an empty source says so
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([QUANTFS, str(empty), str(mnt)], capture_output=True, text=True, timeout=60)
    try:
        assert r.returncode == 0 and "warning: no models found in %s" % empty in r.stderr, r.stderr
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])


def test_a_source_root_that_is_no_directory_is_refused(tmp_path):
    """A source root that is a file, a FIFO, /dev/null, or a directory the
    daemon's user cannot list: one line naming it and why, exit status 1,
    nothing mounted (an adversarial pass saw SIGSEGV/SIGBUS in the scan)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "file").write_text("hi\n")
    os.mkfifo(tmp_path / "fifo")
    cases = [(str(tmp_path / "file"), "Not a directory"), (str(tmp_path / "fifo"), "Not a directory"),
             ("/dev/null", "Not a directory")]
    for root, why in cases:
        r = subprocess.run([QUANTFS, root, str(mnt), "-f"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and root in r.stderr and why in r.stderr, (root, r)
        assert not os.path.ismount(mnt)
    if os.geteuid() == 0 and shutil.which("setpriv"):  # root lists any directory: try as nobody
        priv = tmp_path / "priv"
        priv.mkdir(mode=0o700)
        os.chmod(tmp_path, 0o711)
        os.chmod(mnt, 0o777)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", QUANTFS, str(priv),
                            str(mnt), "-f"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Permission denied" in r.stderr, r
        assert not os.path.ismount(mnt)
