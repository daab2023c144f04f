"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class PromptSearchError(Exception):
    """Something the user can fix: bad input, a missing file, an unknown name.

    The message is one line that says what is wrong, where, and what to do.
    """

    exit_code = 2


class BudgetExhausted(Exception):
    """Raised inside a search when the budget is spent; the searcher keeps its best-so-far."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C in a run that can be resumed: `message` says the one command that continues it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
