"""The one exception type for bad user input.

Anything raised as `InputError` is the user's to fix: the CLI prints its message on one line and
exits with code 2, without a traceback. Every other exception is a bug and exits with code 1.
"""


class InputError(ValueError):
    """Bad input from the user: a spec, a search space, a flag value, a path or a storage URL."""
