"""Paraphrase generation against a fake OpenAI-compatible server on 127.0.0.1: normal replies,
timeouts, HTTP 500s, malformed JSON, resume from the cache, and filters with counts."""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from grpo_sim.data import ParaphraseSet, read_psets, write_psets
from grpo_sim.data.cli import app as data_app
from grpo_sim.data.paraphrase import (
    DEFAULT_TEMPLATE,
    FILTER_REASONS,
    FilterConfig,
    GenerationError,
    OpenAIBackend,
    ParaphraseCache,
    TemplateBackend,
    VLLMBackend,
    filter_paraphrases,
    paraphrase_sets,
    parse_paraphrases,
    render_prompt,
    template_paraphrases,
)

PREFIXES = ("Could you say", "Please tell me,", "I keep wondering:")


class FakeOpenAI:
    """``/v1/chat/completions`` on a random port. ``script[question]`` is a list of actions used
    one per request for that question (then ``"ok"``): ``ok``, ``500``, ``400``, ``malformed``
    (200 with a broken JSON body), ``nochoices``, ``sleep:<s>`` (reply after s seconds), ``drop``
    (close without a reply), ``truncated`` (body shorter than its Content-Length).
    ``replies[question]`` is the model text for ``ok`` (default: a JSON list of wordings)."""

    def __init__(self):
        self.script: dict[str, list[str]] = {}
        self.replies: dict[str, str] = {}
        self.log: list[tuple[str, str]] = []  # (question, action)
        self.prompts: list[str] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == "/v1/chat/completions"
                prompt = body["messages"][-1]["content"]
                m = re.search(r"Question: (.*)", prompt)
                q = m.group(1).strip() if m else prompt.strip()
                with fake.lock:
                    actions = fake.script.get(q, [])
                    action = actions.pop(0) if actions else "ok"
                    fake.log.append((q, action))
                    fake.prompts.append(prompt)
                if action.startswith("sleep:"):
                    time.sleep(float(action.split(":")[1]))
                    action = "ok"
                if action == "drop":  # close the connection without a reply
                    self.close_connection = True
                    return
                if action == "truncated":  # announce more bytes than are sent
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "500")
                    self.end_headers()
                    self.wfile.write(b'{"choices": [')
                    self.close_connection = True
                    return
                if action in ("500", "400"):
                    self._send(int(action), b'{"error": "boom"}')
                elif action == "malformed":
                    self._send(200, b'{"choices": [{"message": {"content": "trunc')
                elif action == "nochoices":
                    self._send(200, b'{"object": "chat.completion", "choices": []}')
                else:
                    text = fake.replies.get(q)
                    if text is None:
                        text = json.dumps([f"{pre} {q[0].lower()}{q[1:]}" for pre in PREFIXES])
                    payload = {
                        "id": "x",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                    }
                    self._send(200, json.dumps(payload).encode())

            def _send(self, code, data):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def requests_for(self, q):
        return [a for qq, a in self.log if qq == q]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = FakeOpenAI()
    yield s
    s.close()


def _sets(*questions, answers=None):
    return [
        ParaphraseSet(
            set_id=f"s{i}",
            question=q,
            paraphrases=[{"paraphrase_id": 0, "question": q}],
            answers=(answers or {}).get(q, []),
        )
        for i, q in enumerate(questions)
    ]


def _backend(server, **kw):
    kw = {"timeout": 2.0, "max_retries": 3, "backoff": 0.01, "max_backoff": 0.05, "concurrency": 3, **kw}
    return OpenAIBackend(server.url, "fake-model", **kw)


QS = ("Where was Varenko born?", "Who founded Zeltek?", "Which company does Tolmir work for?")


def test_normal_generation_and_resume_costs_nothing(server, tmp_path):
    cache_path = tmp_path / "cache.jsonl"
    sets, stats = paraphrase_sets(_sets(*QS), _backend(server), n=3, cache=ParaphraseCache(cache_path))
    assert stats.generated == 3 and stats.requests == 3 and stats.failed == 0 and stats.cache_hits == 0
    assert stats.kept == 9 and stats.candidates == 9
    for s in sets:
        assert [p.paraphrase_id for p in s.paraphrases] == [0, 1, 2, 3]
        assert s.paraphrases[0].question == s.question
        assert s.paraphrases[1].question.startswith("Could you say ")
        assert s.metadata["paraphrase"]["n_kept"] == 3 and s.metadata["paraphrase"]["model"] == "openai:fake-model"
    # the prompt is the default template, with n and the question filled in
    assert server.prompts[0] in {render_prompt(DEFAULT_TEMPLATE, q, 3) for q in QS}
    assert len(cache_path.read_text().splitlines()) == 3

    # a rerun (new process: fresh backend and cache object) sends no request at all
    before = len(server.log)
    backend2 = _backend(server)
    sets2, stats2 = paraphrase_sets(_sets(*QS), backend2, n=3, cache=ParaphraseCache(cache_path))
    assert len(server.log) == before and backend2.requests == 0
    assert stats2.cache_hits == 3 and stats2.generated == 0
    assert sets2 == sets
    # sets that already have n+1 wordings are left alone
    sets3, stats3 = paraphrase_sets(sets, _backend(server), n=3, cache=ParaphraseCache(cache_path))
    assert stats3.skipped_complete == 3 and sets3 == sets and len(server.log) == before


def test_timeout_500_malformed_are_retried(server, tmp_path):
    server.script = {QS[0]: ["sleep:1.0"], QS[1]: ["500", "500"], QS[2]: ["malformed", "nochoices"]}
    backend = _backend(server, timeout=0.3)
    t0 = time.perf_counter()
    sets, stats = paraphrase_sets(_sets(*QS), backend, n=3, cache=ParaphraseCache(tmp_path / "c.jsonl"))
    assert time.perf_counter() - t0 < 5
    assert stats.failed == 0 and stats.generated == 3
    assert server.requests_for(QS[0]) == ["sleep:1.0", "ok"]
    assert server.requests_for(QS[1]) == ["500", "500", "ok"]
    assert server.requests_for(QS[2]) == ["malformed", "nochoices", "ok"]
    assert stats.retries == 5 and stats.requests == 8
    assert all(len(s.paraphrases) == 4 for s in sets)


def test_dropped_and_truncated_responses_are_retried(server):
    server.script = {QS[0]: ["drop", "truncated"]}
    sets, stats = paraphrase_sets(_sets(QS[0]), _backend(server), n=2)
    assert server.requests_for(QS[0]) == ["drop", "truncated", "ok"]
    assert stats.failed == 0 and len(sets[0].paraphrases) == 3


def test_persistent_failure_loses_nothing(server, tmp_path):
    cache_path = tmp_path / "c.jsonl"
    server.script = {QS[2]: ["500"] * 10}
    sets, stats = paraphrase_sets(_sets(*QS), _backend(server, max_retries=2), n=3, cache=ParaphraseCache(cache_path))
    assert stats.failed == 1 and list(stats.errors) == ["s2"] and "HTTP 500" in stats.errors["s2"]
    assert server.requests_for(QS[2]) == ["500"] * 3
    assert [len(s.paraphrases) for s in sets] == [4, 4, 1]  # the failed set keeps its wording
    assert len(ParaphraseCache(cache_path)) == 2
    # rerun once the server is healthy: only the failed question is requested
    server.script = {}
    before = len(server.log)
    sets2, stats2 = paraphrase_sets(_sets(*QS), _backend(server), n=3, cache=ParaphraseCache(cache_path))
    assert [q for q, _ in server.log[before:]] == [QS[2]]
    assert stats2.cache_hits == 2 and stats2.generated == 1 and stats2.failed == 0
    assert sets2[:2] == sets[:2] and len(sets2[2].paraphrases) == 4


def test_client_errors_are_not_retried(server):
    server.script = {QS[0]: ["400"]}
    b = _backend(server)
    with pytest.raises(GenerationError, match="HTTP 400"):
        b.generate(QS[0], render_prompt(DEFAULT_TEMPLATE, QS[0], 2), 2)
    assert server.requests_for(QS[0]) == ["400"]


def test_unreachable_server_fails_after_retries(tmp_path):
    b = OpenAIBackend("http://127.0.0.1:9/v1", "m", timeout=0.2, max_retries=1, backoff=0.01)
    sets, stats = paraphrase_sets(_sets(QS[0]), b, n=2, cache=ParaphraseCache(tmp_path / "c.jsonl"))
    assert stats.failed == 1 and b.requests == 2 and len(sets[0].paraphrases) == 1


class _Interrupting:
    """Wraps a backend; raises KeyboardInterrupt on the k-th call (a user hitting Ctrl-C)."""

    name = "openai"

    def __init__(self, inner, k):
        self.inner, self.k, self.calls, self.model_id, self.concurrency = inner, k, 0, inner.model_id, 1

    def generate(self, question, prompt, n):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return self.inner.generate(question, prompt, n)


def test_interrupted_run_resumes_from_cache(server, tmp_path):
    cache_path = tmp_path / "c.jsonl"
    with pytest.raises(KeyboardInterrupt):
        paraphrase_sets(
            _sets(*QS), _Interrupting(_backend(server), 3), n=2, cache=ParaphraseCache(cache_path), concurrency=1
        )
    assert len(ParaphraseCache(cache_path)) == 2
    before = len(server.log)
    _, stats = paraphrase_sets(_sets(*QS), _backend(server), n=2, cache=ParaphraseCache(cache_path))
    assert stats.cache_hits == 2 and stats.generated == 1 and len(server.log) == before + 1


def test_cache_survives_a_torn_line(tmp_path):
    path = tmp_path / "c.jsonl"
    c = ParaphraseCache(path)
    c.put("k1", {"raw": '["a"]'})
    with path.open("a") as fh:
        fh.write('{"key": "k2", "raw": "[\\"b')  # crash mid-write
    c2 = ParaphraseCache(path)
    assert len(c2) == 1 and c2.corrupt_lines == 1 and "k1" in c2
    c2.put("k3", {"raw": "[]"})
    c3 = ParaphraseCache(path)
    assert set(c3._data) == {"k1", "k3"} and c3.corrupt_lines == 1


def test_filters_with_counts(server, tmp_path):
    q = "Where was Varenko born?"
    candidates = [
        "Where was Varenko born?",  # duplicate of the question
        "where was varenko born",  # duplicate (normalised)
        "Where was Varenkos born?",  # near-duplicate of the question
        "",  # empty
        "   ",  # empty
        "In which city was Varenko born " + "x" * 400 + "?",  # overlong
        "Was Varenko born in Oslandia?",  # leaks the gold answer
        "In which city was Varenko born?",  # kept
        "In which city was Varenko born?",  # duplicate of a kept paraphrase
        "In which city was Varenko bron?",  # near-duplicate of a kept paraphrase
        "What is the birthplace of Varenko?",  # kept
        "Varenko was born in which city?",  # kept
        "Which city is the birthplace of Varenko?",  # surplus (n=3)
    ]
    server.replies = {q: json.dumps(candidates)}
    sets, stats = paraphrase_sets(
        _sets(q, answers={q: ["Oslandia"]}), _backend(server), n=3, cache=ParaphraseCache(tmp_path / "c.jsonl")
    )
    assert [p.question for p in sets[0].paraphrases[1:]] == [
        "In which city was Varenko born?",
        "What is the birthplace of Varenko?",
        "Varenko was born in which city?",
    ]
    assert stats.filtered == {
        "empty": 2,
        "overlong": 1,
        "answer_leak": 1,
        "duplicate_of_question": 2,
        "near_duplicate_of_question": 1,
        "duplicate_of_paraphrase": 1,
        "near_duplicate_of_paraphrase": 1,
        "surplus": 1,
    }
    assert set(stats.filtered) == set(FILTER_REASONS)
    assert stats.candidates == len(candidates) and stats.kept == 3
    assert sets[0].metadata["paraphrase"]["filtered"]["answer_leak"] == 1
    # filters run after the cache: stricter settings on a rerun cost no request
    before = len(server.log)
    sets2, stats2 = paraphrase_sets(
        _sets(q, answers={q: ["Oslandia"]}),
        _backend(server),
        n=3,
        cache=ParaphraseCache(tmp_path / "c.jsonl"),
        filters=FilterConfig(max_chars=30),
    )
    assert len(server.log) == before and stats2.filtered["overlong"] > 1


def test_answer_leak_rules():
    # an answer the question already contains is no leak; yes/no answers are not checked
    kept, counts = filter_paraphrases(
        "Is Oslandia in Varenko's passport?", ["Does Varenko's passport say Oslandia?"], ["Oslandia"]
    )
    assert kept and counts["answer_leak"] == 0
    kept, counts = filter_paraphrases(
        "Were both born in May?", ["Is it true that both were born in May, yes or no?"], ["yes"]
    )
    assert kept and counts["answer_leak"] == 0
    # whole words only, articles ignored
    kept, counts = filter_paraphrases("What city is it?", ["Which urban area is it, the Parisian one?"], ["Paris"])
    assert kept
    kept, counts = filter_paraphrases("What city is it?", ["Is the city Paris?"], ["the Paris"])
    assert not kept and counts["answer_leak"] == 1


def test_existing_paraphrases_are_kept_and_extended(server, tmp_path):
    s = ParaphraseSet(
        set_id="a",
        question=QS[0],
        paraphrases=[
            {"paraphrase_id": 0, "question": QS[0]},
            {"paraphrase_id": 5, "question": "Could you say where was Varenko born?"},
        ],
    )
    sets, stats = paraphrase_sets([s], _backend(server), n=3, cache=ParaphraseCache(None))
    ids = [p.paraphrase_id for p in sets[0].paraphrases]
    assert ids == [0, 5, 6, 7]  # the existing wording 1 is a duplicate of a candidate
    assert stats.filtered["duplicate_of_paraphrase"] == 1
    replaced, _ = paraphrase_sets([s], _backend(server), n=3, cache=ParaphraseCache(None), replace_existing=True)
    assert [p.paraphrase_id for p in replaced[0].paraphrases] == [0, 1, 2, 3]


def test_custom_template(server, tmp_path):
    template = 'Give {n} rewrites as JSON like ["..."] of\nQuestion: {question}\n'
    sets, _ = paraphrase_sets(_sets(QS[1]), _backend(server), n=2, template=template, cache=ParaphraseCache(None))
    assert server.prompts[-1] == 'Give 2 rewrites as JSON like ["..."] of\nQuestion: Who founded Zeltek?\n'
    assert len(sets[0].paraphrases) == 3
    with pytest.raises(ValueError, match="question"):
        paraphrase_sets(_sets(QS[1]), _backend(server), n=2, template="no placeholder")


@pytest.mark.parametrize(
    "text,expected",
    [
        ('["A?", "B?"]', ["A?", "B?"]),
        ('Sure! Here they are:\n```json\n["A?", "B?"]\n```', ["A?", "B?"]),
        ('{"paraphrases": ["A?", {"question": "B?"}]}', ["A?", "B?"]),
        (
            'Here are 3 paraphrases:\n1. Who penned Hamlet?\n2) "Hamlet was written by whom?"\n- Who is the author?',
            ["Who penned Hamlet?", "Hamlet was written by whom?", "Who is the author?"],
        ),
        ("", []),
    ],
)
def test_parse_paraphrases(text, expected):
    assert parse_paraphrases(text) == expected


def test_template_paraphrasing_without_llm():
    rel = template_paraphrases("Where was Varenko born?", 5)
    assert len(rel) == 5 and all("Varenko" in q for q in rel) and "Where was Varenko born?" not in rel
    assert template_paraphrases("Where was Varenko born?", 5) == rel  # deterministic
    assert template_paraphrases("What is the capital of France?", 2) == [
        "Can you tell me what the capital of France is?",
        "Do you know what the capital of France is?",
    ]
    assert template_paraphrases("Which film came out first, A or B?", 1) == ["What film came out first, A or B?"]
    generic = template_paraphrases("Were Scott Derrickson and Ed Wood of the same nationality?", 4)
    assert len(set(generic)) == 4
    sets, stats = paraphrase_sets(_sets("Where was Varenko born?", "Who wrote Hamlet?"), TemplateBackend(), n=3)
    assert [len(s.paraphrases) for s in sets] == [4, 4] and stats.requests == 0 and stats.failed == 0


def test_vllm_backend_batches_prompts():
    class Out:
        def __init__(self, text):
            self.outputs = [type("C", (), {"text": text})()]

    class FakeLLM:
        def __init__(self):
            self.calls = []

        def chat(self, convs, params, use_tqdm=False):
            self.calls.append(len(convs))
            return [
                Out(json.dumps(["Tell me: " + c[0]["content"].split("Question: ")[1].split("\n")[0]])) for c in convs
            ]

    llm = FakeLLM()
    sets, stats = paraphrase_sets(_sets(*QS), VLLMBackend("fake", llm=llm), n=1)
    assert llm.calls == [3] and stats.generated == 3
    assert sets[0].paraphrases[1].question == "Tell me: " + QS[0]


def _cli():
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    return root


def test_cli_paraphrase_openai(server, tmp_path):
    runner = CliRunner()
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_psets(inp, _sets(*QS))
    server.script = {QS[1]: ["500"] * 10}
    args = [
        "data",
        "paraphrase",
        str(inp),
        "--out",
        str(out),
        "--backend",
        "openai",
        "--url",
        server.url,
        "--model",
        "fake-model",
        "--n",
        "2",
        "--retries",
        "1",
        "--backoff",
        "0.01",
        "--timeout",
        "2",
        "--no-progress",
    ]
    r = runner.invoke(_cli(), args)
    assert r.exit_code == 1, r.output
    assert "1 question(s) failed" in r.stderr and "Traceback" not in r.output
    assert "duplicate" not in r.stderr
    got = read_psets(out)
    assert [len(s.paraphrases) for s in got] == [3, 1, 3]
    assert (tmp_path / "out.jsonl.cache.jsonl").exists()
    server.script = {}
    before = len(server.log)
    r = runner.invoke(_cli(), args)
    assert r.exit_code == 0, r.output
    assert "cache hits 2" in r.stdout and "requests 1" in r.stdout
    assert len(server.log) == before + 1
    assert [len(s.paraphrases) for s in read_psets(out)] == [3, 3, 3]
    r = runner.invoke(_cli(), args)
    assert r.exit_code == 0 and "requests 0" in r.stdout and len(server.log) == before + 1


def test_template_wordings_are_injected_not_imported_from_the_demo():
    """paraphrase.py imported the demo world's relations; the families of wordings are now passed in."""
    import ast

    import grpo_sim.data.paraphrase as paraphrase
    from grpo_sim.demo.world import QUESTION_WORDINGS

    imported = set()
    for source in Path(paraphrase.__file__).parent.glob("*.py"):  # the package's every module
        tree = ast.parse(source.read_text())
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and ("synthetic" in m or "demo" in m)}, imported
    family = next(f for f in QUESTION_WORDINGS if "Where was {s} born?" in f)
    wordings = template_paraphrases("Where was Varenko born?", 2, seed=None, wordings=QUESTION_WORDINGS)
    assert wordings == [t.format(s="Varenko") for t in family if t != "Where was {s} born?"][:2]
    assert TemplateBackend(seed=None, wordings=QUESTION_WORDINGS).generate(
        "Where was Varenko born?", "", 2
    ) == json.dumps(wordings)
    assert template_paraphrases("Where was Varenko born?", 1) == ["I would like to know: where was Varenko born?"]
