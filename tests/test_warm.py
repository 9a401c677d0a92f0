"""quantfs-warm: views converted into the cache tiers ahead of use, through
a real mount. Later reads of a warmed view convert nothing (the daemon's
own counters say so), every file's user.quantfs.cache says 1.0000, a cache
too small for the views is said and fails, Ctrl-C stops with 130 and a
rerun finishes, paths outside a mount are refused."""
import json
import os
import signal
import subprocess
import time

from conftest import QUANTFS, SHARED, STORIES_GGUF, read_all

WARM = os.path.join(os.path.dirname(QUANTFS), "quantfs-warm")
MKMODEL = os.path.join(SHARED, "refs", "mixes", "mkmodel_lq.py")


def warm(*args, timeout=600):
    return subprocess.run([WARM] + list(args), capture_output=True, text=True, timeout=timeout)


def stats(m):
    with open(m.path(".quantfs", "stats")) as f:
        return json.load(f)


def cached(path):
    return os.getxattr(path, "user.quantfs.cache").decode()


def test_a_warmed_view_is_read_from_the_cache(mount):
    view = mount.path("stories260K", "q4_k_m")
    r = warm(view)
    assert r.returncode == 0, r.stderr
    assert "warmed 3 file(s)" in r.stdout and "all cached" in r.stdout, r.stdout
    assert "100.0%" in r.stdout  # the plain progress line (not a terminal)
    gguf = os.path.join(view, "stories260K.gguf")
    assert cached(gguf) == "1.0000"
    before = stats(mount)["blocks_computed"]
    assert before > 0
    read_all(gguf)  # a client's first read: nothing left to convert
    assert stats(mount)["blocks_computed"] == before
    # a model directory: each of its views; a list file (-f) with a comment
    lst = os.path.join(os.path.dirname(mount.mnt), "warm.list")
    with open(lst, "w") as f:
        f.write("# the model, every view\n%s\n\n" % mount.path("stories260K"))
    r = warm("-j", "2", "-f", lst)
    assert r.returncode == 0, r.stderr
    for v in ("q2_k", "q6_k", "iq4_xs"):
        assert cached(mount.path("stories260K", v, "stories260K.gguf")) == "1.0000", v


def test_paths_outside_a_mount_are_refused(mount, tmp_path):
    for p in (str(tmp_path), mount.mnt, str(tmp_path / "absent")):
        r = warm(p)
        assert r.returncode == 2 and "not a model, view or file of a quantfs mount" in r.stderr, (p, r.stderr)
    assert warm().returncode == 2


def test_a_cache_smaller_than_the_views_is_said(mount_factory, stories_src):
    m = mount_factory(stories_src, "cache_size=16K", "hot_size=0")
    r = warm(m.path("stories260K", "q4_k_m"))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "stories260K.gguf: 0." in r.stderr and "not all cached" in r.stderr, r.stderr


def test_interrupted_then_finished(mount_factory, tmp_path):
    """SIGINT stops the reads (exit 130, said); a second run completes."""
    src = tmp_path / "big"
    (src / "m").mkdir(parents=True)
    subprocess.run(["/usr/bin/python3", MKMODEL, str(src / "m" / "m.gguf"), "--dim", "1024", "--layers", "2",
                    "--ffn", "1024", "--vocab", "256", "--heads", "8", "--kv-heads", "8", "--name", "m"], check=True,
                   capture_output=True)
    m = mount_factory(src)
    view = m.path("m", "iq3_s")
    p = subprocess.Popen([WARM, "-j", "1", view], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    if p.returncode == 0:  # finished inside half a second: nothing to interrupt on this machine
        assert cached(os.path.join(view, "m.gguf")) == "1.0000"
        return
    assert p.returncode == 130 and "interrupted; what was converted stays in the cache" in err, (p.returncode, err)
    r = warm(view)
    assert r.returncode == 0, r.stderr
    assert cached(os.path.join(view, "m.gguf")) == "1.0000"
