"""MOUNT/.quantfs/models: the store as llama-server's --models-dir (router
mode). Every model a llama.cpp client can load, at every view the mount
serves, is one entry MODEL:VIEW, a link to ../../MODEL/VIEW, following the
live namespace. The rules it is checked against are llama-server v0.5.0's
own scan (common/preset.cpp load_from_models_dir): a sub-directory is a
model, named as the directory, whose one non-mmproj .gguf (or -00001-of-
shard) is loaded. With QUANTFS_LLAMA_SERVER naming a llama-server binary
(bench/router.sh builds one from the npm bundle), a real router lists the
store, loads two models through the mount and generates, and a restart
sees an added model and no removed one."""
import errno
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import SHARED, STORIES_GGUF

HF = os.path.join(SHARED, "models", "stories260K", "hf")
VIEWS = "views=f32,q4_k_m,q8_0,int8,lora"


@pytest.fixture
def store(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(STORIES_GGUF, src / "stories260K.gguf")
    shutil.copytree(HF, src / "hfm")
    return src


def entries(m):
    return sorted(os.listdir(m.path(".quantfs", "models")))


def wait_for(pred, what, timeout=15):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, what
        time.sleep(0.1)


def test_every_gguf_model_at_every_view_is_a_link(mount_factory, store):
    m = mount_factory(str(store), VIEWS)
    assert "models" in os.listdir(m.path(".quantfs"))
    # int8 of a GGUF model is q8_0's alias (not listed); int8 of a Hugging
    # Face model is safetensors only and lora holds adapters: not models
    want = sorted("%s:%s" % (n, v) for n in ("hfm", "stories260K") for v in ("f32", "q4_k_m", "q8_0"))
    assert entries(m) == want
    for e in want:
        link = m.path(".quantfs", "models", e)
        name, view = e.rsplit(":", 1)
        assert os.readlink(link) == "../../%s/%s" % (name, view)
        assert os.path.islink(link) and os.path.isdir(link)
        # llama-server's scan of the sub-directory: one model file
        ggufs = [f for f in os.listdir(link) if f.endswith(".gguf") and "mmproj" not in f]
        assert ggufs == [name + ".gguf"], (e, ggufs)
        # the same file as the view's, not a copy
        assert os.stat(os.path.join(link, ggufs[0])).st_ino == os.stat(m.path(name, view, ggufs[0])).st_ino
    with open(m.path(".quantfs", "models", "stories260K:q8_0", "stories260K.gguf"), "rb") as a, \
            open(m.path("stories260K", "q8_0", "stories260K.gguf"), "rb") as b:
        assert a.read() == b.read()
    for bad in ("stories260K:int8", "stories260K:lora", "hfm:int8", "absent:q8_0", "stories260K", ":q8_0",
                "stories260K:q8_0:x", "stories260K:q6_k"):
        with pytest.raises(OSError) as e:
            os.lstat(m.path(".quantfs", "models", bad))
        assert e.value.errno == errno.ENOENT, bad


def test_the_links_follow_the_store(mount_factory, store):
    m = mount_factory(str(store), VIEWS)
    shutil.copy(STORIES_GGUF, store / "tiny.gguf")
    wait_for(lambda: "tiny:q4_k_m" in entries(m), "an added model gets its links")
    assert os.path.isdir(m.path(".quantfs", "models", "tiny:q4_k_m"))
    os.unlink(store / "stories260K.gguf")
    wait_for(lambda: not any(e.startswith("stories260K:") for e in entries(m)), "a removed model loses its links")
    with pytest.raises(FileNotFoundError):
        os.stat(m.path(".quantfs", "models", "stories260K:q8_0"))


# ------------------------------------------------ a real llama-server

SERVER = os.environ.get("QUANTFS_LLAMA_SERVER")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Router:
    def __init__(self, models_dir, tmp):
        self.port = free_port()
        self.log = open(os.path.join(tmp, "llama-server-%d.log" % self.port), "w+")
        cache = os.path.join(tmp, "llama-cache")  # no models but the mount's
        os.makedirs(cache, exist_ok=True)
        env = dict(os.environ, LLAMA_CACHE=cache)
        self.proc = subprocess.Popen([SERVER, "--models-dir", models_dir, "--models-max", "1", "-c", "256", "-t", "2",
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while True:
            try:
                self.get("/health")
                break
            except OSError:
                assert self.proc.poll() is None and time.time() < deadline, self.output()
                time.sleep(0.2)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=10) as r:
            return json.load(r)

    def post(self, path, body):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.load(r)

    def models(self):
        return sorted(d["id"] for d in self.get("/v1/models")["data"])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.mark.skipif(not SERVER, reason="QUANTFS_LLAMA_SERVER is not set (bench/router.sh builds llama-server)")
def test_llama_server_router_serves_the_store(mount_factory, store, tmp_path):
    m = mount_factory(str(store), VIEWS)
    models_dir = m.path(".quantfs", "models")
    r = Router(models_dir, str(tmp_path))
    try:
        assert r.models() == entries(m)
        for model in ("stories260K:q4_k_m", "hfm:q8_0"):  # the second unloads the first (--models-max 1)
            out = r.post("/v1/completions", {"model": model, "prompt": "Once upon a time", "max_tokens": 12,
                                             "temperature": 0})
            assert out["model"] == model and out["choices"][0]["text"].strip(), (model, out)
    finally:
        r.stop()
    shutil.copy(STORIES_GGUF, store / "tiny.gguf")
    shutil.rmtree(store / "hfm")
    wait_for(lambda: "tiny:q8_0" in entries(m) and not any(e.startswith("hfm:") for e in entries(m)),
             "the namespace follows the store")
    r = Router(models_dir, str(tmp_path))
    try:
        got = r.models()
        assert got == entries(m) and "tiny:q8_0" in got and not any(e.startswith("hfm:") for e in got), got
        out = r.post("/v1/completions", {"model": "tiny:q8_0", "prompt": "Lily", "max_tokens": 8, "temperature": 0})
        assert out["choices"][0]["text"].strip(), out
    finally:
        r.stop()
