"""A fleet on one store (issue 23): cache blocks are keyed by the bytes they
are made from (cache/FORMAT.md), so daemons that serve the same model bytes
share them whatever the path, inode or machine; identical tensors of
different models share blocks; a shared cache_dir on a real network
filesystem (sshfs over loopback: this kernel has no NFS client) is written
once per block by two daemons converting the same views at once. Views are
compared with llama-quantize's own files (refs/mixes)."""
import glob
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import MIXES, QUANTFS, STORIES_GGUF, read_all
from test_cache_mount import computed, wait_stored

VIEWS = ["q8_0", "q4_k_m", "q6_k"]
META_ENTRY = 64 + 16  # an entry holding a source range's hash: header + 16 bytes (cache/FORMAT.md)


def ref(view):
    return read_all(os.path.join(MIXES, "stories260K.%s.gguf" % view))


def model(root, name):
    d = root / name
    d.mkdir(parents=True)
    shutil.copy(STORIES_GGUF, d / "stories260K.gguf")
    return d / "stories260K.gguf"


def entries(cache):
    """(block entries, hash entries) of a cache_dir."""
    files = glob.glob(os.path.join(str(cache), "qfs1", "??", "*"))
    meta = sum(1 for f in files if os.path.getsize(f) == META_ENTRY)
    return len(files) - meta, meta


def hashes(s):
    return s["input_hashes"]["computed"]


def test_same_bytes_at_two_paths_share_blocks(mount_factory, tmp_path):
    """Two daemons on one cache_dir, each over its own copy of the model (as
    two nodes with their own copies, or an rsync'd store, have it): the
    second converts nothing, stores no block, and serves llama-quantize's
    bytes; it only hashes its copy's ranges (another inode)."""
    cache = tmp_path / "cache"
    model(tmp_path / "a", "stories260K")
    model(tmp_path / "b", "llama-tiny")
    a = mount_factory(tmp_path / "a", "cache_dir=%s" % cache, "hot_size=0")
    b = mount_factory(tmp_path / "b", "cache_dir=%s" % cache, "hot_size=0")
    for v in VIEWS:
        assert read_all(a.path("stories260K", v, "stories260K.gguf")) == ref(v), v
    sa = wait_stored(a, "disk")
    a.umount()
    assert computed(sa) > 0 and entries(cache) == (computed(sa), hashes(sa))
    for v in VIEWS:
        assert read_all(b.path("llama-tiny", v, "stories260K.gguf")) == ref(v), v
    sb = b.stats()
    assert computed(sb) == 0, sb
    assert sb["disk"]["hits"] == computed(sa) and sb["disk"]["checksum_failures"] == 0
    assert hashes(sb) == hashes(sa)  # its own ranges, hashed once each
    b.umount()
    assert entries(cache) == (computed(sa), hashes(sa) + hashes(sb))  # no block stored twice


def test_identical_tensors_are_shared_between_models(mount_factory, tmp_path):
    """One daemon, three models: a base, the same file under another name,
    and a fine-tune that changed one tensor. The alias converts nothing; the
    fine-tune converts only its changed tensor's chunks and its view
    differs from the base's only inside that tensor."""
    import gguf_reader
    src = tmp_path / "src"
    model(src, "base")
    model(src, "alias")
    tuned = model(src, "tuned")
    data = bytearray(tuned.read_bytes())
    g = gguf_reader.load(str(tuned))
    name = "blk.4.ffn_up.weight"  # one tensor, one chunk: a fine-tune's new values for it
    t = g.tensors[name]
    vals = [0.01 * ((i * 37) % 201 - 100) for i in range(t["nbytes"] // 4)]
    data[t["offset"]:t["offset"] + t["nbytes"]] = struct.pack("<%df" % len(vals), *vals)
    tuned.write_bytes(bytes(data))

    m = mount_factory(src, "hot_size=0")
    for v in VIEWS:
        assert read_all(m.path("base", v, "stories260K.gguf")) == ref(v), v
    s1 = wait_stored(m, "memory")
    for v in VIEWS:
        assert read_all(m.path("alias", v, "stories260K.gguf")) == ref(v), v
    s2 = m.stats()
    assert computed(s2) == computed(s1), "the same bytes under another name converted again"
    assert s2["memory"]["hits"] > s1["memory"]["hits"]
    got = {v: read_all(m.path("tuned", v, "stories260K.gguf")) for v in VIEWS}
    s3 = m.stats()
    # one chunk per view (views whose type for the tensor is the same share it)
    assert 0 < computed(s3) - computed(s2) <= len(VIEWS), (computed(s1), computed(s2), computed(s3))

    only = tmp_path / "only"  # a daemon with nothing to share the fine-tune's blocks with
    only.mkdir()
    shutil.copytree(src / "tuned", only / "tuned")
    fresh = mount_factory(only)
    for v in VIEWS:
        alone = read_all(fresh.path("tuned", v, "stories260K.gguf"))
        assert got[v] == alone, v
        r = ref(v)
        t = gguf_reader.GGUF(alone).tensors[name]
        lo, hi = t["offset"], t["offset"] + t["nbytes"]
        assert alone[:lo] == r[:lo] and alone[hi:] == r[hi:], v  # llama-quantize's bytes but for the tensor
        assert alone[lo:hi] != r[lo:hi], v


# ------------------------------------------------------------ sshfs fleet

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshfs(tmp_path):
    """An sshd on loopback (its own keys and config, internal-sftp) and a
    function mounting its export with sshfs: the network filesystem of a
    fleet's shared store, as two nodes would mount it."""
    if os.geteuid() != 0:
        pytest.skip("sshd and sshfs mounts need root here")
    for tool in ("/usr/sbin/sshd", shutil.which("sshfs") or "/usr/bin/sshfs"):
        if not os.path.exists(tool):
            pytest.fail("%s is missing: packaging/install-deps.sh installs openssh-server and sshfs" % tool)
    d = tmp_path / "ssh"
    d.mkdir()
    for k in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / k)], check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text("\n".join([
        "Port %d" % port, "ListenAddress 127.0.0.1", "HostKey %s" % (d / "host"),
        "AuthorizedKeysFile %s" % (d / "authorized_keys"), "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
        "PidFile %s" % (d / "pid"), "Subsystem sftp internal-sftp", ""]))
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, (d / "sshd.log").read_text()
            assert time.time() < deadline, "sshd did not listen"
            time.sleep(0.05)
    mounts = []

    def mount(remote, mnt):
        mnt.mkdir()
        subprocess.run(["sshfs", "root@127.0.0.1:%s" % remote, str(mnt), "-o",
                        "port=%d,IdentityFile=%s,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
                        "LogLevel=ERROR,dir_cache=no" % (port, d / "user")], check=True, timeout=30)
        mounts.append(mnt)
        return mnt

    yield mount
    for mnt in reversed(mounts):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
    proc.terminate()
    proc.wait(timeout=10)


def test_a_shared_tier_behind_node_local_caches(mount_factory, tmp_path):
    """The fleet layout: each node's cache_dir on its own disk, one shared
    tier that a writer fills and readers (shared_cache_ro) only read: a
    reader converts nothing, copies what it reads into its own cache_dir,
    and leaves the shared tier as it was; a read-only tier nobody created
    yet is refused at mount."""
    src = tmp_path / "src"
    model(src, "stories260K")
    shared = tmp_path / "shared"
    w = mount_factory(src, "cache_dir=%s" % (tmp_path / "local-w"), "shared_cache=%s" % shared, "hot_size=0")
    for v in VIEWS:
        assert read_all(w.path("stories260K", v, "stories260K.gguf")) == ref(v), v
    sw = wait_stored(w, "shared")
    w.umount()
    n = computed(sw)
    assert n > 0 and sw["shared"]["read_only"] is False
    assert entries(shared)[0] == n and entries(tmp_path / "local-w")[0] == n
    before = sorted((f, os.stat(f).st_mtime_ns) for f in glob.glob(str(shared / "qfs1" / "??" / "*")))

    r = mount_factory(src, "cache_dir=%s" % (tmp_path / "local-r"), "shared_cache=%s" % shared, "shared_cache_ro",
                      "hot_size=0")
    for v in VIEWS:
        assert read_all(r.path("stories260K", v, "stories260K.gguf")) == ref(v), v
    sr = wait_stored(r, "disk")
    r.umount()
    assert computed(sr) == 0 and sr["shared"]["hits"] == n and sr["shared"]["bytes_in"] == 0, sr
    assert sr["shared"]["read_only"] is True and not sr["shared"]["storing"]
    assert entries(tmp_path / "local-r")[0] == n  # copied to the node's own disk
    assert sorted((f, os.stat(f).st_mtime_ns) for f in glob.glob(str(shared / "qfs1" / "??" / "*"))) == before

    again = mount_factory(src, "cache_dir=%s" % (tmp_path / "local-r"), "hot_size=0")  # the node alone now
    for v in VIEWS:
        assert read_all(again.path("stories260K", v, "stories260K.gguf")) == ref(v), v
    sa = again.stats()
    assert computed(sa) == 0 and sa["disk"]["hits"] == n, sa

    mnt = tmp_path / "mnt-ro"
    mnt.mkdir()
    res = subprocess.run([QUANTFS, str(src), str(mnt), "-f", "-o", "shared_cache=%s,shared_cache_ro" %
                          (tmp_path / "none")], capture_output=True, text=True, timeout=20)
    assert res.returncode == 1 and "shared_cache" in res.stderr and "No such file" in res.stderr, res.stderr
    res = subprocess.run([QUANTFS, str(src), str(mnt), "-f", "-o", "shared_cache_ro"], capture_output=True,
                         text=True, timeout=20)
    assert res.returncode == 1 and "shared_cache_ro needs shared_cache" in res.stderr, res.stderr


def test_two_nodes_share_a_tier_over_sshfs(sshfs, mount_factory, tmp_path):
    """The fleet layout on a real network filesystem: two nodes, each with
    its own sshfs mount of one export holding the store and the shared
    tier, and its own local cache_dir, convert the same views at once from
    two readers each: every byte is llama-quantize's, each block is in the
    shared tier once (published with link(), never renamed over), no temp
    file is left, and a third node reading the tier only converts nothing."""
    export = tmp_path / "export"
    model(export / "store", "stories260K")
    (export / "cache").mkdir()
    os.chmod(export / "cache", 0o700)
    nodes = [sshfs(str(export), tmp_path / ("node%d" % i)) for i in range(3)]
    daemons = [mount_factory(n / "store", "cache_dir=%s" % (tmp_path / ("local%d" % i)),
                             "shared_cache=%s" % (n / "cache"), "hot_size=0") for i, n in enumerate(nodes[:2])]
    errors = []

    def reader(mnt, views):
        try:
            for v in views:
                got = read_all(mnt.path("stories260K", v, "stories260K.gguf"))
                if got != ref(v):
                    errors.append((mnt.mnt, v))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((mnt.mnt, repr(e)))

    threads = [threading.Thread(target=reader, args=(m, vs)) for m in daemons for vs in (VIEWS, VIEWS[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    stats = [wait_stored(m, "shared") for m in daemons]
    for m in daemons:
        m.umount()

    # what one daemon alone converts for these views, on a local cache_dir
    alone = mount_factory(export / "store", "cache_dir=%s" % (tmp_path / "alone"), "hot_size=0")
    for v in VIEWS:
        read_all(alone.path("stories260K", v, "stories260K.gguf"))
    n_blocks = computed(wait_stored(alone, "disk"))
    alone.umount()
    assert entries(tmp_path / "alone")[0] == n_blocks
    assert entries(export / "cache")[0] == n_blocks, "blocks stored under more than one name"
    # none of our temp files left (sshfs keeps a file unlinked before its
    # close reached it as .fuse_hidden*: sshfs's, removed by the hourly
    # sweep of tmp/)
    assert not [f for f in os.listdir(export / "cache" / "qfs1" / "tmp") if not f.startswith(".fuse_hidden")]
    for s in stats:
        assert s["shared"]["checksum_failures"] == 0 and s["disk"]["store_errors"] == 0 and s["errors"] == 0, s

    third = mount_factory(nodes[2] / "store", "cache_dir=%s" % (tmp_path / "local2"),
                          "shared_cache=%s" % (nodes[2] / "cache"), "shared_cache_ro", "hot_size=0")
    for v in VIEWS:
        assert read_all(third.path("stories260K", v, "stories260K.gguf")) == ref(v), v
    s = third.stats()
    assert computed(s) == 0 and s["shared"]["hits"] == n_blocks, s


def test_a_merged_view_shares_the_base_s_untouched_tensors(mount_factory, tmp_path):
    """A LoRA adapter merged into its base (BASE+ADAPTER, PEFT's
    merge_and_unload: test_lora.py checks the values) changes only the
    tensors the adapter targets: after the base's q8_0 view, the merged
    model's q8_0 view converts exactly the tensors whose bytes differ from
    the base view's (one chunk each here), and its bytes equal those of a
    daemon that never read the base."""
    import gguf_reader
    from test_lora import merge_store
    src = merge_store(tmp_path)
    m = mount_factory(src, "hot_size=0")
    m.expect_log(r"is not offered")
    base = read_all(m.path("stories260K", "q8_0", "stories260K.gguf"))
    s1 = wait_stored(m, "memory")
    merged = read_all(m.path("stories260K+pattern", "q8_0", "stories260K+pattern.gguf"))
    s2 = m.stats()
    gb, gm = gguf_reader.GGUF(base), gguf_reader.GGUF(merged)
    quantized = [n for n in gb.order if gb.tensors[n]["type"] == 8]  # GGML_TYPE_Q8_0
    differ = [n for n in quantized if gm.tensor_bytes(n) != gb.tensor_bytes(n)]
    assert 0 < len(differ) < len(quantized), differ  # pattern: q, v and down of each layer
    assert computed(s2) - computed(s1) == len(differ), (computed(s1), computed(s2), differ)
    fresh = mount_factory(src, "hot_size=0")
    fresh.expect_log(r"is not offered")
    assert read_all(fresh.path("stories260K+pattern", "q8_0", "stories260K+pattern.gguf")) == merged
