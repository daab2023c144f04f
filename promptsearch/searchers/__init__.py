from promptsearch.searchers.base import Outcome, SearchContext, Searcher, build_config

__all__ = ["Outcome", "SearchContext", "Searcher", "build_config"]
