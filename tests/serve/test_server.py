"""``seqrec serve``: the real server in a subprocess on a loopback port, queried over HTTP with httpx."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, require  # noqa: E402
from seqrec.cli import run
from seqrec.serve.recommend import Recommender

httpx = require("httpx")
require("fastapi")
require("uvicorn")
require("prometheus_client")

TOKEN = "test-token"
SCORE_TOL = 1e-5  # a batch's matrix products may sum in another order than one request's: last-bit differences


def _fit(tiny: list[str], tmp: Path, seed: int, epochs: int) -> Path:
    logger = '--trainer.logger=[{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}]'
    cli = run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, f"--trainer.default_root_dir={tmp}",
               logger % tmp, "--trainer.enable_progress_bar=false", f"--trainer.max_epochs={epochs}",
               "--test_after_fit=false", f"--seed_everything={seed}"])
    return Path(cli.trainer.checkpoint_callback.best_model_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``seqrec serve`` in a subprocess; ``stop()`` ends it."""

    def __init__(self, checkpoint: Path, *args: str, token: str | None = TOKEN):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("SEQREC_ADMIN_TOKEN", None)
        if token is not None:
            env["SEQREC_ADMIN_TOKEN"] = token
        self.log = open(checkpoint.parent / f"server-{self.port}.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "seqrec.cli", "serve", str(checkpoint), "--port",
                                      str(self.port), *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not get ready:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kwargs)

    def metrics(self) -> dict[tuple[str, str], float]:
        """requests_total by (route, status)."""
        out = {}
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith("seqrec_requests_total{"):
                labels, value = line[len("seqrec_requests_total{"):].split("} ")
                d = dict(p.split("=") for p in labels.split(","))
                out[(d["route"].strip('"'), d["status"].strip('"'))] = float(value)
        return out

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def models(tiny: list[str], tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: conftest's per-test argv reset has not run yet
        mp.setattr("sys.argv", ["seqrec"])
        a = _fit(tiny, tmp / "a", 1, 2)
        b = _fit(tiny, tmp / "b", 2, 1)
    served = tmp / "served.ckpt"  # the path the server reads; a reload test writes another model over it
    shutil.copy(a, served)
    return SimpleNamespace(a=a, b=b, served=served, tmp=tmp, rec_a=Recommender.from_checkpoint(a),
                           rec_b=Recommender.from_checkpoint(b))


@pytest.fixture(scope="module")
def server(models: SimpleNamespace) -> Any:
    s = Server(models.served, "--max-batch", "16", "--max-wait-ms", "20")
    yield s
    s.stop()


def _items(resp: httpx.Response) -> tuple[list[Any], np.ndarray]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return [r["item_id"] for r in body["items"]], np.array([r["score"] for r in body["items"]])


def _expected(rec: Recommender, user: Any = None, history: list[Any] | None = None, k: int = 10,
              **rules: Any) -> tuple[list[Any], np.ndarray]:
    top = rec.recommend([user], k=k, **rules) if user is not None else rec.recommend_sequences([history], k=k, **rules)
    return [x.item() if hasattr(x, "item") else x for x in top["item_id"]], np.asarray(top["score"])


def _same(got: tuple[list[Any], np.ndarray], want: tuple[list[Any], np.ndarray]) -> None:
    assert got[0] == want[0]
    assert np.allclose(got[1], want[1], atol=SCORE_TOL, rtol=0)


def test_answers_equal_the_recommender(server: Server, models: SimpleNamespace) -> None:
    rec = models.rec_a
    users = rec.histories.raw_user_ids[[0, 7, 42, 299]].tolist()
    catalogue = rec.raw_item_ids[1:].tolist()
    for u in users:
        _same(_items(server.post("/v1/recommend", {"user_id": u, "k": 10})), _expected(rec, user=u))
        rules = {"items_to_recommend": catalogue[::3], "exclude_items": catalogue[:6]}
        got = server.post("/v1/recommend", {"user_id": u, "k": 7, "allow": catalogue[::3], "exclude": catalogue[:6]})
        _same(_items(got), _expected(rec, user=u, k=7, **rules))
    history = catalogue[10:14]
    _same(_items(server.post("/v1/recommend", {"history": history, "k": 5})), _expected(rec, history=history, k=5))
    # exclude_seen false: the history's items may come back, exactly as the Python API has it
    got = server.post("/v1/recommend", {"history": history, "k": 5, "exclude_seen": False})
    want = rec.recommend_sequences([history], k=5, exclude_seen=False)
    assert _items(got)[0] == want["item_id"].tolist()
    # similar items are the Recommender's cosine neighbours
    got = server.post("/v1/similar", {"item_id": catalogue[3], "k": 5})
    want = rec.similar_items([catalogue[3]], k=5)
    _same(_items(got), (want["similar_item_id"].tolist(), np.asarray(want["score"])))
    assert got.json()["model_version"] == f"served.ckpt@{_sha(models.a)}"


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_a_micro_batch_answers_each_request_as_if_alone(server: Server, models: SimpleNamespace) -> None:
    rec = models.rec_a
    catalogue = rec.raw_item_ids[1:].tolist()
    rng = np.random.default_rng(0)
    bodies: list[dict[str, Any]] = []
    for i in range(48):  # different users, histories, k and rules in one burst
        if i % 2:
            bodies.append({"user_id": rec.histories.raw_user_ids[i * 5].item(), "k": 1 + i % 12})
        else:
            hist = rng.choice(catalogue, size=1 + i % 9, replace=False).tolist()
            bodies.append({"history": hist, "k": 3 + i % 5, "exclude": hist[:1] + catalogue[:2],
                           **({"allow": catalogue[i:: 4]} if i % 4 == 0 else {})})
    alone = [_items(server.post("/v1/recommend", b)) for b in bodies]
    before = _batch_sizes(server)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda b: _items(server.post("/v1/recommend", b)), bodies))
    after = _batch_sizes(server)
    for got, want in zip(together, alone):
        _same(got, want)
    requests, passes = after[0] - before[0], after[1] - before[1]
    assert requests == len(bodies) and passes < len(bodies) / 2, (requests, passes)  # batches formed


def _batch_sizes(server: Server) -> tuple[float, float]:
    text = server.client.get("/metrics").text
    total = float(next(l.split()[1] for l in text.splitlines() if l.startswith("seqrec_batch_size_sum")))
    count = float(next(l.split()[1] for l in text.splitlines() if l.startswith("seqrec_batch_size_count")))
    return total, count


def test_bad_input_is_a_4xx_naming_the_field_and_the_server_keeps_answering(server: Server,
                                                                           models: SimpleNamespace) -> None:
    rec = models.rec_a
    catalogue = rec.raw_item_ids[1:].tolist()
    n = len(catalogue)
    cases = [
        ({"user_id": "no-such-user"}, 404, "user_id: unknown user"),
        ({"history": [catalogue[0], "no-such-item"], "strict": True}, 422, "history: unknown item id(s) ['no-such-item']"),
        ({"history": []}, 422, "history: is empty"),
        ({"history": ["x", "y"]}, 422, "history: no item of the history"),
        ({"history": [catalogue[0]], "k": 0}, 422, "k: Input should be greater than or equal to 1"),
        ({"history": [catalogue[0]], "k": 100000}, 422, "k: Input should be less than or equal to 1000"),
        ({"history": [catalogue[0]], "k": n + 1}, 422, f"k: must lie in 1..{n}"),
        ({"history": [catalogue[0]], "k": "ten"}, 422, "k: Input should be a valid integer"),
        ({}, 422, "user_id: give exactly one of user_id"),
        ({"user_id": 0, "history": [catalogue[0]]}, 422, "user_id: give exactly one"),
        ({"history": [catalogue[0]], "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
        ({"history": [catalogue[0]], "allow": ["nope"]}, 422, "allow: holds no item"),
        ({"history": [catalogue[0]], "exclude": ["nope"], "strict": True}, 422, "exclude: unknown item id(s)"),
    ]
    for body, status, message in cases:
        r = server.post("/v1/recommend", body)
        assert r.status_code == status and message in r.json()["error"], (body, r.status_code, r.text)
    r = server.post("/v1/similar", {"item_id": "nope"})
    assert r.status_code == 404 and "item_id: unknown item" in r.json()["error"]
    r = server.client.post("/v1/recommend", content=b'{"history": [1,', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    big = json.dumps({"history": catalogue * (1 + (2 << 20) // (5 * n))}).encode()
    assert len(big) > 1 << 20
    r = server.client.post("/v1/recommend", content=big)
    assert r.status_code == 413 and "body:" in r.json()["error"]
    r = server.client.post("/v1/recommend", content=iter([big[i: i + 65536] for i in range(0, len(big), 65536)]))
    assert r.status_code == 413  # chunked, without a content-length: counted as it arrives
    # Unknown items are skipped and listed; a history longer than max_len uses its most recent items.
    r = server.post("/v1/recommend", {"history": [catalogue[0], "ghost", catalogue[1]], "k": 3})
    assert r.status_code == 200 and r.json()["unknown_items"] == ["ghost"]
    long = [catalogue[i % n] for i in range(3 * rec.max_len + 7)]
    r = server.post("/v1/recommend", {"history": long, "k": 4})
    assert r.json()["history_used"] == rec.max_len
    _same(_items(r), _expected(rec, history=long, k=4))
    assert server.client.get("/healthz").json() == {"status": "alive"}
    assert server.post("/v1/recommend", {"history": catalogue[:3]}).status_code == 200
    assert server.proc.poll() is None


def test_metrics_count_what_was_sent(server: Server, models: SimpleNamespace) -> None:
    catalogue = models.rec_a.raw_item_ids[1:].tolist()
    before = server.metrics()
    for _ in range(5):
        server.post("/v1/recommend", {"history": catalogue[:2]})
    for _ in range(3):
        server.post("/v1/recommend", {"user_id": "nobody"})
    server.post("/v1/similar", {"item_id": catalogue[0]})
    server.client.get("/no-such-route")
    after = server.metrics()

    def delta(route: str, status: str) -> float:
        return after.get((route, status), 0.0) - before.get((route, status), 0.0)

    assert delta("/v1/recommend", "200") == 5 and delta("/v1/recommend", "404") == 3
    assert delta("/v1/similar", "200") == 1 and delta("other", "404") == 1
    text = server.client.get("/metrics").text
    assert f'seqrec_model_info{{index="exact",version="served.ckpt@{_sha(models.a)}"}} 1.0' in text
    assert "seqrec_request_seconds_bucket" in text and "seqrec_model_load_seconds" in text


def test_reload_during_a_burst_loses_no_request(server: Server, models: SimpleNamespace) -> None:
    rec_a, rec_b = models.rec_a, models.rec_b
    version_a = f"served.ckpt@{_sha(models.a)}"
    version_b = f"{models.b.name}@{_sha(models.b)}"
    users = rec_a.histories.raw_user_ids[:40].tolist()
    want = {version_a: {u: _expected(rec_a, user=u, k=5) for u in users},
            version_b: {u: _expected(rec_b, user=u, k=5) for u in users}}
    assert server.post("/admin/reload", {"checkpoint": str(models.b)}).status_code == 401  # no token
    wrong = server.post("/admin/reload", {"checkpoint": str(models.b)}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and server.client.get("/readyz").json()["model_version"] == version_a

    def ask(u: Any) -> tuple[Any, httpx.Response]:
        return u, server.post("/v1/recommend", {"user_id": u, "k": 5})

    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ThreadPoolExecutor(8) as pool:
        first = [pool.submit(ask, u) for u in users * 3]
        reloaded = server.post("/admin/reload", {"checkpoint": str(models.b)}, headers=auth)
        second = [pool.submit(ask, u) for u in users * 2]
        answers = [f.result() for f in first + second]
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["model_version"] == version_b and reloaded.json()["previous_version"] == version_a
    seen = set()
    for u, r in answers:
        assert r.status_code == 200, r.text
        version = r.json()["model_version"]
        seen.add(version)
        _same(_items(r), want[version][u])  # every answer comes whole from one model or the other
    assert version_b in seen  # the requests sent after the reload answered, all by the new model
    assert all(r.json()["model_version"] == version_b for _, r in answers[len(first):])

    broken = models.tmp / "broken.ckpt"
    broken.write_bytes(models.a.read_bytes()[:1000])
    r = server.post("/admin/reload", {"checkpoint": str(broken)}, headers=auth)
    assert r.status_code == 422 and "broken.ckpt" in r.json()["error"] and version_b in r.json()["error"]
    assert server.client.get("/readyz").json()["model_version"] == version_b
    _same(_items(server.post("/v1/recommend", {"user_id": users[0], "k": 5})), want[version_b][users[0]])
    assert "reload failed" in server.output()

    # SIGHUP reloads the current path: a new model written over it is picked up.
    shutil.copy(models.a, models.b.parent / "next.ckpt")
    assert server.post("/admin/reload", {"checkpoint": str(models.b.parent / "next.ckpt")},
                       headers=auth).status_code == 200
    shutil.copy(models.b, models.b.parent / "next.ckpt")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while server.client.get("/readyz").json()["model_version"] != f"next.ckpt@{_sha(models.b)}":
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)


def test_reload_is_refused_without_a_token_configured(models: SimpleNamespace) -> None:
    s = Server(models.a, "--max-batch", "1", token=None)
    try:
        r = s.post("/admin/reload", {}, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "SEQREC_ADMIN_TOKEN" in r.json()["error"]
        # --max-batch 1 serves one request per encoder pass, with the same answers
        catalogue = models.rec_a.raw_item_ids[1:].tolist()
        _same(_items(s.post("/v1/recommend", {"history": catalogue[:4], "k": 6})),
              _expected(models.rec_a, history=catalogue[:4], k=6))
        assert _batch_sizes(s)[0] == _batch_sizes(s)[1]  # every batch held one request
    finally:
        s.stop()


def test_serve_names_a_missing_checkpoint_and_bad_options(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "seqrec.cli", "serve", str(tmp_path / "none.ckpt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "none.ckpt: no such checkpoint" in r.stderr
    (tmp_path / "x.ckpt").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "seqrec.cli", "serve", str(tmp_path / "x.ckpt"), "--max-batch", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--max-batch must be at least 1" in r.stderr
