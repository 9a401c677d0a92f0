#!/usr/bin/python3
"""What describing a model costs, for two builds of quantfs in one run
(issue 17: before/after), alternating, medians of ROUNDS rounds.

    bench/describe.py QUANTFS_A QUANTFS_B WORKDIR [ROUNDS]

1. Cold `stat` of the GGUF view of a Hugging Face model with a 512-token
   vocabulary (stories260K's safetensors; its header is built from
   config.json, tokenizer.json and the safetensors header), from a fresh
   mount, and of the same view of its F32 GGUF file: ratio HF / GGUF.
2. stat(2)/fstat(2) calls the daemon makes while a client stats one view
   file of that model 200 times (attribute and entry caches off:
   -o timeout=0, so each stat also looks up the model and view
   directories), counted with strace attached to the daemon; per client
   stat.
3. Peak RSS of the daemon (VmHWM) after mounting a store whose model has a
   62 MB config.json (the issue's case: 31 M array values) and listing it,
   and whether the model still lists its views."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "models", "stories260K")


def start(quantfs, src, *opts):
    mnt = tempfile.mkdtemp()
    args = [quantfs, src, mnt, "-f"]
    for o in opts:
        args += ["-o", o]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not os.path.ismount(mnt):
        assert p.poll() is None and time.time() < deadline, "mount failed"
        time.sleep(0.01)
    return p, mnt


def stop(p, mnt):
    subprocess.run(["fusermount3", "-u", mnt], check=True)
    p.wait(timeout=30)
    os.rmdir(mnt)


def hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


def cold_stat(quantfs, src, path):
    p, mnt = start(quantfs, src)
    t = time.perf_counter()
    os.stat(os.path.join(mnt, path))
    dt = time.perf_counter() - t
    stop(p, mnt)
    return dt


def stat_calls(quantfs, src, path, n=200):
    p, mnt = start(quantfs, src, "timeout=0")
    full = os.path.join(mnt, path)
    os.stat(full)  # built once
    out = os.path.join(tempfile.mkdtemp(), "strace.txt")
    tr = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-e", "trace=%stat,%fstat", "-p", str(p.pid)],
                          stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached
    for _ in range(n):
        os.stat(full)
    time.sleep(0.2)
    tr.terminate()
    tr.communicate()
    stop(p, mnt)
    calls = 0
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in ("stat", "newfstatat", "statx", "lstat", "fstat"):
                calls += int(parts[3])
    return calls / n


def big_config(quantfs, src):
    p, mnt = start(quantfs, src)
    views = os.listdir(os.path.join(mnt, "m"))
    rss = hwm(p.pid)
    stop(p, mnt)
    return rss, views


def main():
    qa, qb, work = sys.argv[1], sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    hf = os.path.join(work, "hf")
    if not os.path.isdir(hf):
        os.makedirs(os.path.join(hf, "gg"))
        shutil.copytree(os.path.join(SHARED, "hf"), os.path.join(hf, "st"))
        shutil.copyfile(os.path.join(SHARED, "gguf", "stories260K.gguf"), os.path.join(hf, "gg", "gg.gguf"))
    big = os.path.join(work, "bigconfig")
    if not os.path.isdir(big):
        shutil.copytree(os.path.join(SHARED, "hf"), os.path.join(big, "m"))
        with open(os.path.join(SHARED, "hf", "config.json")) as f:
            text = f.read().rstrip().rstrip("}")
        with open(os.path.join(big, "m", "config.json"), "w") as f:
            f.write(text + ', "pad": [' + ",".join(["0"] * (31 << 20)) + "]}")
    print("config.json of the big-config model: %d MB" % (os.path.getsize(os.path.join(big, "m", "config.json")) >> 20))
    res = {qa: [], qb: []}
    for _ in range(rounds):
        for q in (qa, qb):
            hs = cold_stat(q, hf, "st/q4_k_m/st.gguf")
            gs = cold_stat(q, hf, "gg/q4_k_m/gg.gguf")
            res[q].append((hs, gs))
    calls = {q: stat_calls(q, hf, "st/q4_k_m/st.gguf") for q in (qa, qb)}
    bigres = {q: big_config(q, big) for q in (qa, qb)}
    print("%-40s %12s %12s %9s %16s %10s %s" % ("build", "HF stat ms", "GGUF stat ms", "HF/GGUF", "stat(2)/stat",
                                                 "RSS MB", "big-config model lists"))
    for q in (qa, qb):
        hs = statistics.median(r[0] for r in res[q]) * 1e3
        gs = statistics.median(r[1] for r in res[q]) * 1e3
        print("%-40s %12.1f %12.1f %8.1fx %16.1f %10d %s" % (q[-40:], hs, gs, hs / gs, calls[q], bigres[q][0],
                                                            " ".join(sorted(bigres[q][1]))))
    a = statistics.median(r[0] for r in res[qa]) / statistics.median(r[0] for r in res[qb])
    print("cold HF stat, A/B: %.1fx; peak RSS with the 62 MB config.json, A/B: %.1fx" %
          (a, bigres[qa][0] / max(1, bigres[qb][0])))


if __name__ == "__main__":
    main()
