"""Memory of the demo server under sustained concurrent load (a soak, not a timed test).

Starts `demo/app.py` in a subprocess (a tiny random fusion checkpoint unless --model is given; MediaPipe faces at
10 fps), sends --rounds rounds of --concurrency simultaneous requests through `gradio_client` (the real clips of
../shared/media, round-robin), and after each round records the server's resident memory (RSS, and the anonymous
part of it: the heap; RSS also counts file pages the kernel may drop when other processes need memory), its thread
count and the files in its Gradio temporary folder. Prints a table and, with --json, writes the rows.

    python benchmarks/demo_memory.py                                   # this checkout
    python benchmarks/demo_memory.py --repo /path/to/other/checkout    # e.g. the code before a change
    python benchmarks/demo_memory.py --env MALLOC_ARENA_MAX=2          # an environment variable for the server

"Flat after warm-up" is read from the rows: the growth from the end of round 2 to the last round.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("EMI_HF_MEDIA_DIR", REPO.parent / "shared" / "media"))
CLIPS = ("single_face.mp4", "debate_5s.mp4", "face_noface.mov", "noface_face.mov", "no_face.mp4",
         "WolfgangLanger_Pexels.mp4")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_checkpoint(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import save_tiny_checkpoint

    return save_tiny_checkpoint(folder)


def _memory(pid: int) -> dict:
    """RSS and its anonymous part (MiB), threads, from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    kib = lambda name: int(fields.get(name, "0 kB").split()[0])  # noqa: E731
    return {"rss_mib": round(kib("VmRSS") / 1024, 1), "anon_mib": round(kib("RssAnon") / 1024, 1),
            "threads": int(fields.get("Threads", 0))}


def _temp_files(folder: Path) -> tuple[int, float]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), round(sum(p.stat().st_size for p in files) / 2**20, 1)


def soak(repo: Path, model: Path, rounds: int, concurrency: int, env_extra: dict, timeout_s: float) -> list[dict]:
    from gradio_client import Client, handle_file

    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="emi-demo-soak-"))
    env = {**os.environ, "EMI_HF_MODEL": str(model), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(temp / "gradio"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(repo / "src"), "EMI_HF_QUEUE_SIZE": str(max(20, 2 * concurrency)), **env_extra}
    log = open(temp / "server.log", "w")
    server = subprocess.Popen([sys.executable, str(repo / "demo" / "app.py")], env=env, stdout=log,
                              stderr=subprocess.STDOUT, cwd=temp)
    rows = []
    try:
        url, started = f"http://127.0.0.1:{port}/", time.time()
        while True:
            try:
                client = Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if server.poll() is not None or time.time() - started > timeout_s:
                    raise RuntimeError(f"the server did not start: see {temp / 'server.log'}") from None
                time.sleep(1.0)
        clips = [MEDIA / name for name in CLIPS if (MEDIA / name).is_file()]
        rows.append({"round": 0, **_memory(server.pid), "temp_files": 0, "temp_mib": 0.0, "wall_s": 0.0})
        for k in range(1, rounds + 1):
            began = time.time()
            with ThreadPoolExecutor(concurrency) as pool:
                jobs = [pool.submit(lambda clip: Client(url, verbose=False).predict(
                    handle_file(str(clip)), api_name="/predict"), clips[(k * concurrency + i) % len(clips)])
                    for i in range(concurrency)]
                for job in jobs:
                    job.result(timeout=timeout_s)
            files, size = _temp_files(temp / "gradio")
            rows.append({"round": k, **_memory(server.pid), "temp_files": files, "temp_mib": size,
                         "wall_s": round(time.time() - began, 1)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose demo/app.py and src/ run (default: "
                                                                "this one)")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: a tiny random fusion model)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server's environment")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    model = args.model or _tiny_checkpoint(Path(tempfile.mkdtemp(prefix="emi-demo-model-")) / "model")
    extra = dict(item.split("=", 1) for item in args.env)
    rows = soak(args.repo.resolve(), model, args.rounds, args.concurrency, extra, args.timeout)
    print(f"\n{'round':>5} {'RSS MiB':>8} {'anon MiB':>9} {'threads':>8} {'temp files':>11} {'temp MiB':>9} {'s':>6}")
    for row in rows:
        print(f"{row['round']:>5} {row['rss_mib']:>8} {row['anon_mib']:>9} {row['threads']:>8} "
              f"{row['temp_files']:>11} {row['temp_mib']:>9} {row['wall_s']:>6}")
    if len(rows) > 3:  # anonymous memory is the heap; RSS also counts file pages the kernel may drop under pressure
        last = rows[-1]
        print(f"growth after warm-up (end of round 2 -> round {last['round']}): "
              f"{last['anon_mib'] - rows[2]['anon_mib']:+.1f} MiB anonymous, {last['rss_mib'] - rows[2]['rss_mib']:+.1f} "
              f"MiB RSS; highest anonymous after round 2: {max(r['anon_mib'] for r in rows[2:]):.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"repo": str(args.repo), "env": extra, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
