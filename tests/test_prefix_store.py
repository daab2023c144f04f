"""The HF backend's prefix KV store on its own: least recently used dropped past its token
limit (the newest always kept), and the longest kept prefix a new prefix extends."""

from promptsearch.backends.prefix_store import PrefixStore


def test_least_recently_used_prefixes_go_first_past_the_token_limit():
    store = PrefixStore(max_tokens=10)
    store.keep((1, 2, 3, 4), "a")
    store.keep((5, 6, 7, 8), "b")
    assert store.get((1, 2, 3, 4)) == "a"  # now the most recent: "b" goes first
    store.keep((9, 9, 9), "c")  # 11 tokens kept: one must go
    assert (5, 6, 7, 8) not in store and (1, 2, 3, 4) in store and (9, 9, 9) in store
    store.keep(tuple(range(20)), "long")  # over the limit alone: kept, the rest dropped
    assert len(store) == 1 and store.get(tuple(range(20))) == "long"


def test_a_prefix_extends_the_longest_kept_one_it_starts_with():
    store = PrefixStore()
    store.keep((1, 2), "short")
    store.keep((1, 2, 3, 4), "longer")
    store.keep((1, 9), "other")
    assert store.longest_start((1, 2, 3, 4, 5, 6)) == (4, "longer")
    assert store.longest_start((1, 2, 3)) == (2, "short")
    assert store.longest_start((1, 2, 3, 4)) == (2, "short")  # itself is not an extension of itself
    assert store.longest_start((7, 8)) == (0, None) and store.get((7, 8)) is None
