"""The LLM judge against a small fake OpenAI-compatible server on 127.0.0.1."""

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_eval_metrics import PREDS, SETS

from grpo_sim.eval import JudgeError, JudgeUnreachableError, LLMJudge, summarize
from grpo_sim.eval.judge import CORRECTNESS_PROMPT, EQUIVALENCE_PROMPT, chat_completions_url, parse_verdict


class FakeServer:
    """OpenAI chat-completions stand-in: equivalence = same first word; correct = gold contained.

    ``fail_first`` requests get HTTP ``fail_code``; at most ``limit`` requests are served.
    """

    def __init__(self, fail_first=0, fail_code=503, limit=200):
        self.requests = []
        self.fail_first, self.fail_code, self.limit = fail_first, fail_code, limit
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                n = len(server.requests)
                if n <= server.fail_first or n > server.limit:
                    self.send_response(server.fail_code if n <= server.fail_first else 429)
                    self.end_headers()
                    self.wfile.write(b'{"error": "try later"}')
                    return
                prompt = body["messages"][0]["content"]
                if "Answer A:" in prompt:
                    a = re.search(r"Answer A: (.*)", prompt).group(1).split()
                    b = re.search(r"Answer B: (.*)", prompt).group(1).split()
                    reply = "Yes." if a[:1] == b[:1] else "No, they differ."
                else:
                    gold = re.search(r"Gold answer\(s\): (.*)", prompt).group(1)
                    cand = re.search(r"Candidate answer: (.*)", prompt).group(1)
                    reply = "yes" if any(g in cand for g in gold.split(" | ")) else "no"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_parse_and_url():
    assert parse_verdict("Yes.") == 1.0 and parse_verdict(" no, because") == 0.0
    assert parse_verdict("The answer is yes") == 1.0 and parse_verdict("maybe") != parse_verdict("maybe")
    assert chat_completions_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("https://api.x/v1/chat/completions") == "https://api.x/v1/chat/completions"
    with pytest.raises(JudgeError, match="http"):
        chat_completions_url("localhost:8000")
    assert "yes or no" in EQUIVALENCE_PROMPT and "yes or no" in CORRECTNESS_PROMPT


def test_judge_consistency_accuracy_cache_and_retries(tmp_path):
    cache = tmp_path / "judge_cache.json"
    with FakeServer(fail_first=2) as srv:
        judge = LLMJudge(srv.url, "fake-judge", cache_path=cache, backoff=0.01, max_workers=4)
        s = summarize(SETS, PREDS, metrics=("exact_match",), n_boot=50, judge=judge)
        # A: "the cat sat"/"the cat" same first word (yes), "a dog" differs -> 1 of 3 pairs; B: identical
        # after normalisation -> no request, 1.0
        assert s["consistency_e2e_judge"] == pytest.approx((1 / 3 + 1) / 2)
        # accuracy: A gold "the cat" in "the cat sat", "the cat", not "a dog"; B "Paris" in all three
        assert s["accuracy_judge"] == pytest.approx((2 / 3 + 1) / 2)
        assert s["judge_unparsed"] == 0
        # 3 pair questions + 5 distinct accuracy questions (B's two "Paris" are one prompt), plus the
        # 2 failed (503) tries that were retried
        assert len(srv.requests) == 8 + 2 and judge.stats["retries"] == 2
        path, body = srv.requests[-1]
        assert path == "/v1/chat/completions" and body["model"] == "fake-judge" and body["temperature"] == 0.0
        # the cache survives: a new judge on the same file sends nothing
        again = LLMJudge(srv.url, "fake-judge", cache_path=cache, backoff=0.01)
        assert summarize(SETS, PREDS, metrics=("exact_match",), n_boot=50, judge=again) == s
        assert len(srv.requests) == 10 and again.stats["cache_hits"] == 9
        assert len(json.loads(cache.read_text())["entries"]) == 8
        # another judge model is another cache key
        other = LLMJudge(srv.url, "other-judge", cache_path=cache, backoff=0.01)
        other.complete("hello? Answer A: x\nAnswer B: x")
        assert len(srv.requests) == 11


def test_judge_http_errors(tmp_path):
    with FakeServer(fail_first=100, fail_code=401) as srv:
        judge = LLMJudge(srv.url, "m", backoff=0.01, max_retries=3)
        with pytest.raises(JudgeError, match="HTTP 401"):
            judge.equivalent_many([("q", "a b", "c d")])
        assert len(srv.requests) == 1  # 4xx: no retry
    with FakeServer(fail_first=100, fail_code=500) as srv:
        judge = LLMJudge(srv.url, "m", backoff=0.01, max_retries=2, cache_path=tmp_path / "c.json")
        with pytest.raises(JudgeError, match="failed after 3 tries: HTTP 500"):
            judge.equivalent_many([("q", "a b", "c d")])
        assert len(srv.requests) == 3


def test_unreachable_endpoint_is_named():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    judge = LLMJudge(url, "m", backoff=0.01, max_retries=2, timeout=2)
    t = time.perf_counter()
    with pytest.raises(JudgeUnreachableError, match=re.escape(url + "/chat/completions") + ".*unreachable"):
        summarize(SETS, PREDS, metrics=("exact_match",), n_boot=0, judge=judge)
    assert time.perf_counter() - t < 5
    with pytest.raises(JudgeError, match="model name"):
        LLMJudge(url, "")
