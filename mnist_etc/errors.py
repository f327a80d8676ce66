"""The one exception type for mistakes a user can make (bad option, bad file, bad name).

The CLI prints its message as one sentence and exits non-zero; anything else is a bug and keeps its trace.
"""


class UserError(ValueError):
    """A problem with the user's input: the message names the bad value and what is accepted."""
