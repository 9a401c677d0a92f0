"""quantfs-check --chart and the daemon's MODEL/.check.svg: bits per weight
against KL divergence to f32 (log scale) and top-1 agreement, drawn as a
self-contained SVG. The SVG is parsed as XML (every checked view labelled,
one marker per spot, placed where its numbers say) and rendered by a real
browser, Debian's headless Chromium, whose PNG must show the markers in
their colours (blue pass, red fail) and the text; and the terminal shows one
line per view as it finishes."""
import json
import math
import os
import pty
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import STORIES_GGUF

from test_check import CHECK, stories_mount  # noqa: F401 (fixture)

SVG = "{http://www.w3.org/2000/svg}"
VIEWS = "f32,fp16,q8_0,q6_k,q4_k_m,q4_0,q3_k_m,q2_k,iq4_xs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASS_RGB, FAIL_RGB = (0x1f, 0x6f, 0xb4), (0xd6, 0x27, 0x28)


def texts(root):
    return ["".join(t.itertext()) for t in root.iter(SVG + "text")]


def markers(root, cls):
    return [c for c in root.iter(SVG + "circle") if c.get("class") == cls]


def render(svg_path, png_path):
    """Chromium draws the SVG; returns the PNG's pixels (PIL)."""
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (packaging/install-deps.sh installs it)")
        pytest.skip("chromium is not installed")
    from PIL import Image
    root = ET.parse(svg_path).getroot()
    w, h = int(root.get("width")), int(root.get("height"))
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=%d,%d" % (w, h), "--screenshot=" + str(png_path), "file://" + str(svg_path)],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(png_path.parent)))
    assert r.returncode == 0 and png_path.exists(), r.stderr[-2000:]
    return Image.open(png_path).convert("RGB")


def count_near(img, rgb, tol=40):
    n = 0
    for p in img.getdata():
        if abs(p[0] - rgb[0]) + abs(p[1] - rgb[1]) + abs(p[2] - rgb[2]) < tol:
            n += 1
    return n


def test_chart_of_a_models_views(stories_mount, tmp_path):
    svg = tmp_path / "chart.svg"
    out = tmp_path / "c.json"
    r = subprocess.run([CHECK, "--views=" + VIEWS, "--json", "--chart=" + str(svg), stories_mount.path("stories260K")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out.write_text(r.stdout)
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    root = ET.parse(svg).getroot()  # well-formed XML
    assert root.tag == SVG + "svg" and not list(root.iter(SVG + "script"))
    assert not re.search(r'(href|src)\s*=', svg.read_text()), "self-contained: no external resource"
    labels = ", ".join(texts(root))
    assert "stories260K" in labels and "bits per weight" in labels
    for row in rows:
        if row["view"] == "f32":  # the reference: KL 0, said under the chart
            assert "not drawn: f32 (identical to f32: KL 0)" in labels
        else:
            assert re.search(r"(^|, )%s(,|$)" % re.escape(row["view"]), labels), (row["view"], labels)
    # every drawn view's hover title carries its numbers; markers sit in
    # the order of their KL (log scale: smaller KL lower on the chart)
    titles = {}
    for c in root.iter(SVG + "circle"):
        t = c.find(SVG + "title")
        if t is not None:
            titles[t.text.split(":")[0]] = float(c.get("cy"))
    drawn = [x for x in rows if x["view"] != "f32"]
    assert set(titles) == {x["view"] for x in drawn}
    by_kl = sorted(drawn, key=lambda x: x["kl_mean"])
    for a, b in zip(by_kl, by_kl[1:]):
        if b["kl_mean"] > a["kl_mean"] * 1.01:
            assert titles[b["view"]] < titles[a["view"]], (a, b)
    assert markers(root, "pass") and not [c for c in markers(root, "fail") if c.get("cy") != "44"]
    img = render(svg, tmp_path / "chart.png")
    assert len(set(img.getdata())) > 20, "blank render"
    assert count_near(img, PASS_RGB) > 40 * 4, "pass markers not drawn"


def test_failed_views_are_red_and_said(stories_mount, tmp_path):
    svg = tmp_path / "fail.svg"
    r = subprocess.run([CHECK, "--views=fp16,q4_0,q2_k", "--threshold-kl=0.001", "-q", "--chart=" + str(svg),
                        stories_mount.path("stories260K")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    root = ET.parse(svg).getroot()
    fails = [c for c in markers(root, "fail") if c.get("cy") != "44"]  # beside the legend's
    assert len(fails) >= 2  # q4_0 and q2_k, in both panels (they may share a spot)
    img = render(svg, tmp_path / "fail.png")
    assert count_near(img, FAIL_RGB) > 40 * 2


def test_chart_refusals(stories_mount, tmp_path):
    p = stories_mount.path("stories260K")
    r = subprocess.run([CHECK, "--chart=" + str(tmp_path / "x.svg"), p, p], capture_output=True, text=True)
    assert r.returncode == 2 and "--chart draws one PATH" in r.stderr
    r = subprocess.run([CHECK, "--views=q8_0", "-q", "--chart=" + str(tmp_path / "no" / "x.svg"), p],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "x.svg" in r.stderr


def test_progress_lines_on_a_terminal(stories_mount):
    """On a terminal each view's verdict is printed as it finishes."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(CHECK, [CHECK, "--views=q8_0,q4_0,q2_k", "--threads=1", stories_mount.path("stories260K")])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, st = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.WEXITSTATUS(st) == 0, text
    lines = re.findall(r"\[(\d)/3\] (\S+)\s+(PASS|FAIL)  [\d.]+ bits/w  top-1 [\d.]+  KL [\d.e+-]+\r?\n", text)
    assert [(n, v) for n, v, _ in lines] == [("1", "q8_0"), ("2", "q4_0"), ("3", "q2_k")], text


def test_daemon_writes_the_chart_beside_the_report(mount_factory, tmp_path):
    src = tmp_path / "src"
    (src / "stories260K").mkdir(parents=True)
    shutil.copy(STORIES_GGUF, src / "stories260K" / "stories260K.gguf")
    m = mount_factory(src, "check", "views=f32,q8_0,q4_k_m,q2_k")
    m.expect_log(r"check of model")
    names = os.listdir(m.path("stories260K"))
    assert ".check.json" in names and ".check.svg" in names
    deadline = time.time() + 120
    while json.load(open(m.path("stories260K", ".check.json")))["status"] == "running":
        assert time.time() < deadline
        time.sleep(0.2)
    svg = m.path("stories260K", ".check.svg")
    root = ET.parse(svg).getroot()
    labels = ", ".join(texts(root))
    for v in ("q8_0", "q4_k_m", "q2_k"):
        assert v in labels, labels
    local = tmp_path / "check.svg"
    shutil.copy(svg, local)
    img = render(local, tmp_path / "check.png")
    assert count_near(img, PASS_RGB) > 40 * 3
    assert math.isfinite(os.stat(svg).st_size) and os.stat(svg).st_size == len(open(svg, "rb").read())
