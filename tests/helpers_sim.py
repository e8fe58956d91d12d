"""A tiny user similarity used to test dotted-path specs (``tests.helpers_sim:my_sim``)."""


def my_sim(texts_a, texts_b):
    """1.0 where the two texts have the same number of characters, else 0.0."""
    return [[1.0 if len(a) == len(b) else 0.0 for b in texts_b] for a in texts_a]
