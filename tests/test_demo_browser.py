"""The demo in a real browser: Debian's Chromium, headless, driven by Playwright's Python package.

Uploads a real clip, presses Analyse, waits for the results (summary, plots, face crops) and saves a screenshot
(EMI_HF_SCREENSHOT, default tests/artifacts/demo_screenshot.png). The page must load nothing from outside 127.0.0.1.

Chromium is Debian's (`apt-get install chromium`, /usr/bin/chromium), not a Playwright download. Without it the test
skips, unless EMI_HF_INSTALL_BROWSER=1, in which case it installs it with apt-get first (needs root).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import LoopbackOnly, launched, load_app, save_tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = Path(os.environ.get("EMI_HF_SCREENSHOT", REPO_ROOT / "tests" / "artifacts" / "demo_screenshot.png"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-features=Translate,OptimizationHints,MediaRouter"]
CLIP = "single_face.mp4"


def find_chromium() -> str:
    for candidate in (os.environ.get("EMI_HF_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    if os.environ.get("EMI_HF_INSTALL_BROWSER") == "1":
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True, timeout=600)
        done = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True,
                              text=True, timeout=900)
        if done.returncode == 0 and Path("/usr/bin/chromium").is_file():
            return "/usr/bin/chromium"
        pytest.skip(f"EMI_HF_INSTALL_BROWSER=1 but `apt-get install chromium` failed: {done.stderr[-500:]}")
    pytest.skip("Chromium not found (/usr/bin/chromium): `apt-get install chromium`, or run with "
                "EMI_HF_INSTALL_BROWSER=1 to let this test install it (root), or set EMI_HF_CHROMIUM")


def example_clips(folder: Path, media_dir: Path) -> Path:
    """Four synthetic validation clips, as the quickstart's examples look; the real media if that fails."""
    try:
        from emi_hf.data.synthetic import generate_synthetic_dataset

        generate_synthetic_dataset(folder, num_train=0, num_valid=4, seed=0)
        return folder
    except Exception as error:  # noqa: BLE001 - examples are decoration here
        print(f"synthetic examples unavailable ({error}); using {media_dir}")
        return media_dir


def test_upload_analyse_and_screenshot(media_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install "
                                                                   "playwright (its browser download is not needed)")
    chromium = find_chromium()
    app = load_app()
    model = save_tiny_checkpoint(tmp_path / "model")
    examples = example_clips(tmp_path / "examples", media_dir)
    with LoopbackOnly() as guard:
        demo = app.build_demo(model_path=model, examples_dir=examples)
        with launched(demo, app) as url, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                requests: list[str] = []
                page.on("request", lambda request: requests.append(request.url))
                page.goto(url)
                page.wait_for_selector("#emi-analyse", timeout=30_000)
                assert page.locator("#emi-video input[type=file]").count() == 1
                assert page.get_by_text("Examples (synthetic clips)").count() >= 1

                # A non-video file: the page refuses it, and Analyse without a video says what to do.
                notes = tmp_path / "notes.txt"
                notes.write_text("not a video")
                page.locator("#emi-video input[type=file]").set_input_files(str(notes))
                page.click("#emi-analyse")
                page.get_by_text("No video yet").first.wait_for(timeout=30_000)
                while page.locator("[data-testid=toast-close]").count():  # dismiss the messages
                    page.locator("[data-testid=toast-close]").first.click()
                    page.wait_for_timeout(300)

                page.locator("#emi-video input[type=file]").set_input_files(str(media_dir / CLIP))
                page.wait_for_selector("#emi-video video", timeout=30_000)  # upload done, preview shown
                began = time.perf_counter()
                page.click("#emi-analyse")
                page.wait_for_function(
                    "() => (document.querySelector('#emi-summary')?.innerText || '').includes('Strongest')",
                    timeout=90_000)
                page.wait_for_selector("#emi-faces img", timeout=30_000)
                page.wait_for_selector("#emi-bars img", timeout=30_000)
                page.wait_for_selector("#emi-timeline img", timeout=30_000)
                page.wait_for_timeout(500)  # let images finish painting
                print(f"{CLIP}: results in the page {time.perf_counter() - began:.1f} s after the click")

                summary = page.locator("#emi-summary").inner_text()
                assert "Joy" in summary and "audio: present" in summary
                assert page.locator("#emi-faces img").count() >= 1
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
                print(f"screenshot: {SCREENSHOT}")

                # One click on an example loads it into the video input.
                page.locator("#emi-examples img, #emi-examples video").first.click()
                first_example = Path(app.find_examples(examples)[0]).stem
                page.wait_for_function(
                    "name => (document.querySelector('#emi-video video')?.src || '').includes(name)",
                    arg=first_example, timeout=30_000)
            finally:
                browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
    outside = sorted({u for u in requests if u.split(":")[0] in ("http", "https", "ws", "wss")
                      and not u.split("/")[2].startswith(("127.0.0.1", "localhost"))})
    assert outside == [], f"the page loaded from outside 127.0.0.1: {outside[:5]}"
    assert guard.violations == []


def fake_camera_file(path: Path, clip: Path, size: tuple[int, int] = (320, 180), fps: int = 10) -> Path:
    """A YUV4MPEG2 file (what Chromium's fake camera plays, in a loop) of a real clip's frames at `fps`."""
    import cv2

    from emi_hf.media.decoding import iter_video_frames

    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in iter_video_frames(clip, target_fps=fps):
            image = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
            handle.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@contextlib.contextmanager
def live_tab(sync_api, model: Path, tmp_path: Path, args: list[str], height: int):
    """The demo serving `model` (loopback only), opened in Chromium with `args` (its fake devices), on the Live tab:
    yields (page, guard); the browser is closed on the way out, `guard.violations` is checked by the caller."""
    chromium = find_chromium()
    app = load_app()
    with LoopbackOnly() as guard:
        demo = app.build_demo(model_path=model, examples_dir=tmp_path / "no-examples")
        with launched(demo, app) as url, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=args)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": height})
                page.goto(url)
                page.wait_for_selector("#emi-analyse", timeout=30_000)
                page.get_by_role("tab", name="Live").click()
                yield page, guard
            finally:
                browser.close()


def start_camera_and_microphone(page) -> None:
    page.locator("#emi-live-webcam").get_by_text("Click to Access Webcam").click()
    page.locator("#emi-live-webcam").get_by_text("Record").click()
    page.locator("#emi-live-mic").get_by_text("Record").click()


def test_live_tab_streams_the_fake_camera_and_microphone(media_dir, tmp_path):
    """The Live tab with Chromium's fake camera (a real clip) and fake microphone (a tone): updates with the
    face, the latency and both charts appear on the page."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install "
                                                                   "playwright (its browser download is not needed)")
    model = save_tiny_checkpoint(tmp_path / "model")
    camera = fake_camera_file(tmp_path / "camera.y4m", media_dir / CLIP)
    args = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                            f"--use-file-for-fake-video-capture={camera}"]
    with live_tab(sync_api, model, tmp_path, args, height=1000) as (page, guard):
        start_camera_and_microphone(page)
        status = "() => document.querySelector('#emi-live-status')?.innerText || ''"
        page.wait_for_function(f"() => ({status})().includes('latency')", timeout=120_000)
        page.wait_for_function(  # a few hops later, with the fake microphone's beeps in the window
            f"() => {{ const s = ({status})(), m = s.match(/Update (\\d+)/); "
            "return m && +m[1] >= 4 && s.includes('speech: yes'); }", timeout=120_000)
        text = page.evaluate(status)
        page.wait_for_selector("#emi-live-bars canvas, #emi-live-bars svg", timeout=30_000)
        page.wait_for_selector("#emi-live-timeline canvas, #emi-live-timeline svg", timeout=30_000)
        page.screenshot(path=str(SCREENSHOT.with_name("live_screenshot.png")), full_page=True)
        print(f"live status: {text}")
    assert "latency" in text and " ms" in text and "face: yes" in text and "speech: yes" in text
    assert guard.violations == []


def test_live_tab_shows_the_words_of_the_fake_microphone(media_dir, tmp_path):
    """A three-way fusion on the Live tab with Chromium's fake microphone playing a real speech clip (in a loop): the
    transcript area fills with the words of the tiny random Whisper the model names, and the text bar chart
    appears."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install "
                                                                   "playwright (its browser download is not needed)")
    from emi_hf.text.random_whisper import build_random_whisper
    from helpers import save_tiny_three_way_checkpoint

    whisper = build_random_whisper(tmp_path / "whisper", max_new_tokens=4)
    model = save_tiny_three_way_checkpoint(tmp_path / "model", asr_model=whisper)
    camera = fake_camera_file(tmp_path / "camera.y4m", media_dir / CLIP)
    args = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                            f"--use-file-for-fake-video-capture={camera}",
                            f"--use-file-for-fake-audio-capture={media_dir / 'debate_5s_16k.wav'}"]
    with live_tab(sync_api, model, tmp_path, args, height=1200) as (page, guard):
        assert "No words yet" in page.locator("#emi-live-transcript").inner_text()
        start_camera_and_microphone(page)
        # (innerText without Gradio's progress timer, e.g. "0.1s")
        transcript = ("() => (document.querySelector('#emi-live-transcript')?.innerText || '')"
                      ".replace(/\\b\\d+\\.\\ds\\b/g, '').trim()")
        status = "() => document.querySelector('#emi-live-status')?.innerText || ''"
        page.wait_for_function(f"() => {{ const s = ({transcript})(); "
                               "return s.length > 0 && !s.includes('No words yet'); }", timeout=180_000)
        # an update whose window holds the words: the text bar chart has values then
        page.wait_for_function(f"() => /words: (final|partial)/.test(({status})())", timeout=60_000)
        page.wait_for_selector("#emi-live-text-bars canvas, #emi-live-text-bars svg", timeout=30_000)
        words, status = page.evaluate(transcript), page.evaluate(status)
        page.screenshot(path=str(SCREENSHOT.with_name("live_words_screenshot.png")), full_page=True)
        print(f"live transcript: {words!r}; status: {status}")
    assert words and re.search(r"words: (final|partial)", status) and "latency" in status
    assert guard.violations == []
