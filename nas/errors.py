"""The library's exceptions for bad input.

Anything raised as `InputError` is the user's to fix: the CLI prints its message on one line and
exits with code 2, without a traceback. Every other exception is a bug and exits with code 1.
`SettingError` names the setting at fault as the library knows it (`proxy_epochs`), so that the CLI
can word the message with its own flag (`--proxy-epochs`).
"""


class InputError(ValueError):
    """Bad input from the user: a spec, a search space, a setting, a path or a storage URL."""


class SettingError(InputError):
    """A setting with a value it cannot take: `setting` is its name, `problem` what is wrong."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting} {problem}")
        self.setting = setting
        self.problem = problem
