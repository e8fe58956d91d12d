"""User reward functions for the tests, importable by dotted path (tests/ is on sys.path)."""


def words_from_target(completions, target=3, **kwargs):
    """TRL-style reward: minus the distance of each completion's word count from ``target``."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [-float(abs(len(t.split()) - target)) for t in texts]


def echo_kwargs(completions, **kwargs):
    """Records what TRL passed (for the call-signature test)."""
    echo_kwargs.seen = sorted(kwargs)
    return [0.0] * len(completions)


NOT_CALLABLE = 3
