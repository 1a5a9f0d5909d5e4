"""The one error type users see: bad input, reported as a single line that names the fix."""


class UserError(Exception):
    """Bad input (config, path, data). The CLI prints `error: <message>` and exits with code 2."""

    exit_code = 2
