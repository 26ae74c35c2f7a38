"""The one exception type users see: a one-line message naming the problem and the fix."""


class ForecastError(ValueError):
    """Bad input or configuration; ``str(err)`` is a single line meant for the user.

    The command-line interface prints it as ``error: <message>`` and exits with status 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
