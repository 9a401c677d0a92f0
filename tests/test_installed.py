"""The installed Debian package (packaging/test-deb.sh installs it, then runs
this with QUANTFS_INSTALLED=1): mount(8) through mount.fuse3 with -t and
with a scratch fstab (mount -T), the unit files, the service user, the man
pages, and SIGTERM as systemd sends it. Root is needed (mount, runuser)."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import MIXES, STORIES_GGUF

pytestmark = pytest.mark.skipif(os.environ.get("QUANTFS_INSTALLED") != "1" or os.geteuid() != 0,
                                reason="runs against the installed package, as root (packaging/test-deb.sh)")
BIN = "/usr/bin/quantfs"


def sh(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kw)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


@pytest.fixture
def store(tmp_path):
    src = tmp_path / "src" / "stories260K"
    src.mkdir(parents=True)
    shutil.copyfile(STORIES_GGUF, src / "stories260K.gguf")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    yield tmp_path / "src", mnt
    if os.path.ismount(mnt):
        subprocess.run(["umount", "-l", str(mnt)])


def q8_ref():
    return open(os.path.join(MIXES, "stories260K.q8_0.gguf"), "rb").read()


def test_the_package_installed_what_it_should():
    assert shutil.which("quantfs") == BIN and os.access("/usr/bin/quantfs-check", os.X_OK)
    assert os.access("/usr/bin/quantfs-warm", os.X_OK)
    v = sh(BIN, "--version").stdout
    assert v.startswith("quantfs 0.1.0 (codec ") and "FUSE library version" in v, v
    for page in ("quantfs", "quantfs-check", "quantfs-warm", "quantfs.conf"):
        path = sh("man", "-w", page).stdout.strip()
        assert path.startswith("/usr/share/man/"), path
        r = sh("sh", "-c", "zcat %s | groff -man -ww -z" % path)
        assert not r.stderr, (page, r.stderr)
    assert os.path.exists("/usr/share/doc/quantfs/examples/quantfs.conf.example")
    assert sh("getent", "passwd", "quantfs").stdout.startswith("quantfs:")  # made by systemd-sysusers in postinst


def test_mount_t_fuse_quantfs(store, tmp_path):
    src, mnt = store
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    sh("mount", "-t", "fuse.quantfs", str(src), str(mnt), "-o",
       "ro,allow_other,nofail,x-systemd.requires-mounts-for=/tmp,cache_dir=%s" % cache)
    try:
        line = [l for l in open("/proc/mounts") if " %s " % mnt in l]
        assert line and line[0].split()[2] == "fuse.quantfs" and "allow_other" in line[0], line
        assert open(os.path.join(mnt, "stories260K", "q8_0", "stories260K.gguf"), "rb").read() == q8_ref()
    finally:
        sh("umount", str(mnt))
    assert not os.path.ismount(mnt)
    # a bad option: the mount fails with one message
    r = sh("mount", "-t", "fuse.quantfs", str(src), str(mnt), "-o", "views=q9_9", check=False)
    assert r.returncode != 0 and not os.path.ismount(mnt)
    assert "q9_9" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_scratch_fstab_and_a_config_file(store, tmp_path):
    src, mnt = store
    conf = tmp_path / "models.conf"
    conf.write_text("# a config, as quantfs.conf(5) describes\nsource = %s\nviews = q8_0, q4_k_m\n" % src)
    fstab = tmp_path / "fstab"
    fstab.write_text("%s %s fuse.quantfs ro,nofail,x-systemd.requires-mounts-for=%s,config=%s 0 0\n" %
                     (src, mnt, src, conf))
    sh("mount", "-T", str(fstab), str(mnt))
    try:
        assert sorted(os.listdir(os.path.join(mnt, "stories260K"))) == ["q4_k_m", "q8_0"]
        assert open(os.path.join(mnt, "stories260K", "q8_0", "stories260K.gguf"), "rb").read() == q8_ref()
    finally:
        sh("umount", str(mnt))


def test_unit_files_verify():
    unit = "/lib/systemd/system/quantfs@.service"
    assert os.path.exists(unit)
    # an instance of the template, as systemctl enable quantfs@mnt-models would make
    r = sh("systemd-analyze", "verify", "quantfs@mnt-models.service", check=False)
    assert r.returncode == 0, r.stderr
    text = open(unit).read()
    assert "ExecStart=/usr/bin/quantfs -f %f -o config=/etc/quantfs/%i.conf" in text and "User=quantfs" in text
    # the warm-up example, installed as its comment says
    example = "/usr/share/doc/quantfs/examples/quantfs-warm@.service"
    assert "ExecStart=/usr/bin/quantfs-warm -q -w 120 -f /etc/quantfs/warm-%i" in open(example).read()
    shutil.copy(example, "/etc/systemd/system/quantfs-warm@.service")
    try:
        r = sh("systemd-analyze", "verify", "quantfs-warm@mnt-models.service", check=False)
        assert r.returncode == 0, r.stderr
    finally:
        os.unlink("/etc/systemd/system/quantfs-warm@.service")


def test_service_user_mounts_and_sigterm_stops_cleanly(store, tmp_path):
    """What the unit does: the unprivileged quantfs user mounts through the
    setuid fusermount3, in the foreground; SIGTERM unmounts and exits 0."""
    import tempfile
    top = tempfile.mkdtemp(prefix="quantfs-svc-")  # pytest's tmp is 0700 root: the user could not reach it
    os.chmod(top, 0o755)
    src, mnt = os.path.join(top, "src"), os.path.join(top, "mnt")
    shutil.copytree(store[0], src)
    os.mkdir(mnt)
    shutil.chown(mnt, "quantfs", "quantfs")
    # Debian's udev makes /dev/fuse 0666 (50-udev-default.rules); a container
    # may leave it 0600, which no unprivileged FUSE daemon can open
    mode = os.stat("/dev/fuse").st_mode & 0o777
    os.chmod("/dev/fuse", 0o666)
    # setpriv execs the daemon itself (runuser would stay its parent and take the signal)
    p = subprocess.Popen(["setpriv", "--reuid=quantfs", "--regid=quantfs", "--init-groups", BIN, "-f", str(mnt), "-o",
                          "source=%s" % src],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    def mounted():  # root cannot stat a mount without allow_other: ask /proc/mounts
        return [l for l in open("/proc/mounts") if " %s " % mnt in l]
    try:
        deadline = time.time() + 20
        while not mounted() and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert mounted(), p.stdout.read() if p.poll() is not None else "no mount"
        assert "user_id=%d" % int(sh("id", "-u", "quantfs").stdout) in mounted()[0], mounted()
        got = subprocess.run(["runuser", "-u", "quantfs", "--", "cat",
                              os.path.join(mnt, "stories260K", "q8_0", "stories260K.gguf")],
                             capture_output=True, timeout=60).stdout
        assert got == q8_ref()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0, p.stdout.read()
        assert not mounted()
    finally:
        if p.poll() is None:
            p.kill()
            subprocess.run(["umount", "-l", mnt])
        shutil.rmtree(top, ignore_errors=True)
        os.chmod("/dev/fuse", mode)
